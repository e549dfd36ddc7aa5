"""The lock a process holds on a database file while it serves or restores it."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import IO

from broker.errors import Conflict
from broker.numbers import whole_number_or

_held: dict[str, tuple[IO[str], int]] = {}
_guard = threading.Lock()


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def holder_pid(db_path: Path) -> int | None:
    """The pid written by the process holding the lock, if one holds it now."""
    path = lock_path(db_path)
    try:
        with open(path) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = fh.read().strip()
                return whole_number_or(text, 0)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except FileNotFoundError:
        pass
    return None


def acquire(db_path: Path, doing: str = "starting a broker on it") -> None:
    """Take the exclusive lock of this database file, or raise Conflict naming the pid
    holding it. An flock: the kernel drops it when the process dies, even by SIGKILL, so
    a crash never leaves a stale lock. Re-entrant within one process (a restore opens
    the store it is restoring)."""
    key = str(db_path.resolve())
    with _guard:
        if key in _held:
            fh, count = _held[key]
            _held[key] = (fh, count + 1)
            return
        path = lock_path(db_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # held open for as long as the lock is
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = whole_number_or(fh.read(64).strip(), 0)
            fh.close()
            by = f" (pid {pid})" if pid else ""
            raise Conflict(f"{db_path} is in use by another opsbus process{by}: stop it"
                           f" before {doing}", pid=pid or None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        _held[key] = (fh, 1)


def release(db_path: Path) -> None:
    """Give back one hold of the lock; the file lock goes with the last one."""
    key = str(db_path.resolve())
    with _guard:
        if key not in _held:
            return
        fh, count = _held[key]
        if count > 1:
            _held[key] = (fh, count - 1)
            return
        del _held[key]
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
