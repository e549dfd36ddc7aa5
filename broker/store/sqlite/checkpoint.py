"""Checkpoints off the commit path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold: that
commit copies the log's pages back into the database file, wherever they lie in it, and
fsyncs it, while every event behind it waits (at 10 M stored events, tens of
milliseconds). Here the writer never checkpoints as part of COMMIT. A thread with its
own connection copies the log (PASSIVE checkpoints, which neither take the write lock
nor wait for readers) while commits go on, pass after pass until little is left, each
time `checkpoint_bytes` more are waiting. The log restarts from its beginning only when
a writer begins a transaction with every frame copied, which a copy running beside a
busy writer rarely sees; so once the log holds `RESTART_FACTOR` times that, the last
few frames are copied by the committing thread itself, after its commit was handed to
the live readers, and its next transaction restarts the log (one small copy per
restart, instead of the whole copy in one commit). Should the writer outrun the copy,
the committing thread finishes it once the log reaches `BOUND_FACTOR` times the
checkpoint size, so the log stays bounded whatever the ingest rate.

Durability is unchanged: the log is fsynced at each COMMIT as before, and a checkpoint
syncs the log before it writes a page of the database, and the database before the log
may restart, whichever connection runs it."""

from __future__ import annotations

import logging
import mmap
import os
import sqlite3
import struct
import threading
from pathlib import Path

from broker.store.sqlite.connections import SYNCHRONOUS

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_BYTES = 16 * 1024 * 1024

RESTART_FACTOR = 2
"""Once the log holds this many times the checkpoint size, the committing thread copies
the little the background left, so that the log restarts."""

BOUND_FACTOR = 4
"""The log is bounded at this many times the checkpoint size (and at `wal_max_bytes`):
there the committing thread completes the copy itself, waiting for a pass under way."""

TAIL_FRAMES = 64
"""A background pass that leaves at most this many frames uncopied hands the rest to
the committing thread (one small copy there restarts the log)."""

_HEADER = struct.Struct("=I")
_MAX_FRAME_AT = 16
"""`mxFrame` in the wal-index header: frames in the log (sqlite.org/walformat.html)."""
_BACKFILL_AT = 96
"""`nBackfill` in the checkpoint info after the header's two copies: frames copied."""
_INDEX_BYTES = 136


class WalIndex:
    """The log's frame counters as SQLite keeps them in the shared-memory index
    (`<db>-shm`): read without a lock or a system call, they may be a commit behind,
    which only moves a decision to the next commit."""

    def __init__(self, db_path: Path) -> None:
        # The descriptor stays open until every SQLite connection of this process to the
        # file is closed (`release`): closing any descriptor of a file drops all the
        # process's POSIX locks on it, SQLite's included, and without its lock on the
        # index another process that opens the database would take itself for the only
        # user and truncate the index under this process's connections.
        self._fd = os.open(db_path.with_name(db_path.name + "-shm"), os.O_RDONLY)
        try:
            self._map = mmap.mmap(self._fd, _INDEX_BYTES, prot=mmap.PROT_READ)
        except BaseException:
            os.close(self._fd)
            raise

    def frames(self) -> tuple[int, int]:
        """(frames in the log, frames of them copied into the database)."""
        return (_HEADER.unpack_from(self._map, _MAX_FRAME_AT)[0],
                _HEADER.unpack_from(self._map, _BACKFILL_AT)[0])

    def close(self) -> None:
        """Once no SQLite connection of this process has the database open (see above)."""
        self._map.close()
        os.close(self._fd)


class Checkpointer:
    """Copies the log back into the database beside the writer (see the module)."""

    def __init__(self, db_path: Path, checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
                 max_bytes: int | None = None, durability: str = "full") -> None:
        self.db_path = db_path
        self.durability = durability
        """As the writer's: with "off" the copies sync nothing, as SQLite's would not."""
        self.checkpoint_bytes = checkpoint_bytes
        self.max_bytes = max_bytes
        self.start_frames = 0
        self.restart_frames = 0
        self.bound_frames = 0
        self.background_frames = 0
        """Frames the background thread copied into the database."""
        self.writer_frames = 0
        """Frames the committing thread copied (the tails and the bound's backstop)."""
        self._index: WalIndex | None = None
        self._conn: sqlite3.Connection | None = None
        self._copying = threading.Lock()
        """Held for each pass, whoever runs it: a pass that finds another under way
        would only be refused."""
        self._wake = threading.Condition()
        self._wanted = False
        self._idle = True
        self._stopping = False
        self._tail_due = False
        self._thread: threading.Thread | None = None
        self._db_fd = -1

    def attach(self, writer: sqlite3.Connection) -> None:
        """Take the writer's checkpoints off its COMMIT and start the copying thread."""
        (page_size,) = writer.execute("PRAGMA page_size").fetchone()
        frame = int(page_size) + 24
        self.start_frames = max(1, self.checkpoint_bytes // frame)
        self.bound_frames = BOUND_FACTOR * self.start_frames
        if self.max_bytes is not None:  # the log file's own limit is the harder one
            self.bound_frames = max(1, min(self.bound_frames, self.max_bytes // frame))
        self.restart_frames = min(RESTART_FACTOR * self.start_frames, self.bound_frames // 2)
        try:
            self._index = WalIndex(self.db_path)
        except (OSError, ValueError) as exc:  # no shared-memory index to read
            log.warning("WAL checkpoints stay in the commit: %s", exc)
            return
        writer.execute("PRAGMA wal_autocheckpoint=0")
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[self.durability]}")
        self._conn = conn
        self._db_fd = os.open(self.db_path, os.O_RDONLY)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="opsbus-checkpoint",
                                        daemon=True)
        self._thread.start()

    def after_commit(self, writer: sqlite3.Connection) -> None:
        """On the committing thread, right after COMMIT (its readers already told):
        wake the copying thread past the checkpoint size, or to converge before a
        restart; copy the tail it left, or everything once the log reaches its bound."""
        if self._index is None:
            return
        frames, copied = self._index.frames()
        left = frames - copied
        if self._idle and (left >= self.start_frames or (
                frames >= self.restart_frames and left > TAIL_FRAMES and not self._tail_due)):
            with self._wake:
                self._wanted = True
                self._idle = False
                self._wake.notify()
        if (self._tail_due or frames >= self.bound_frames) and frames > copied:
            self._tail_due = False
            self._copy(writer, background=False)

    def wait_idle(self) -> None:
        """Block until the copying thread has nothing left to do."""
        with self._wake:
            self._wake.wait_for(lambda: self._idle or self._stopping)

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            with self._wake:
                self._stopping = True
                self._wake.notify_all()
            thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def release(self) -> None:
        """Close the database's and its index's descriptors: only once every SQLite
        connection of this process to the database is closed (closing a descriptor
        drops the process's locks on the file, SQLite's too)."""
        if self._db_fd >= 0:
            os.close(self._db_fd)
            self._db_fd = -1
        if self._index is not None:
            self._index.close()
            self._index = None

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._wanted or self._stopping)
                if self._stopping:
                    return
                self._wanted = False
            try:
                self._catch_up()
            except Exception:  # the bound still holds: the committing thread copies
                log.exception("the background WAL copy failed")
            finally:
                with self._wake:
                    self._idle = True
                    self._wake.notify_all()

    def _catch_up(self) -> None:
        """Passes until the log is nearly all copied, then the tail to the writer."""
        assert self._conn is not None and self._index is not None
        while not self._stopping:
            copied_all = self._copy(self._conn, background=True)
            # SQLite syncs the database only in the pass that copies the whole log (the
            # one that lets it restart): that sync would write back every page the
            # background copied since the last restart, on the committing thread.
            # Written back here, the tail's sync has only the tail's pages to write.
            if self.durability != "off":
                os.fdatasync(self._db_fd)
            if not copied_all:
                return  # a reader holds an older snapshot: the next commit retries
            frames, copied = self._index.frames()
            if frames - copied <= TAIL_FRAMES:
                self._tail_due = frames >= self.restart_frames and frames > copied
                return

    def _copy(self, conn: sqlite3.Connection, background: bool) -> bool:
        """One PASSIVE checkpoint on `conn`; False when it could not copy everything it
        was allowed to (a reader on an older snapshot, or an error)."""
        assert self._index is not None
        with self._copying:
            before = self._index.frames()[1]
            try:
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)"
                                                    ).fetchone()
            except sqlite3.Error as exc:
                # After a commit that succeeded: never turn it into an error. The log
                # stays as it is until the next attempt.
                log.warning("WAL checkpoint failed: %s", exc)
                return False
        done = max(0, copied - before) if copied >= 0 else 0
        if background:
            self.background_frames += done
        else:
            self.writer_frames += done
        return not busy and copied == frames
