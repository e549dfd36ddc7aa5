"""SQLite statements for the event log: appends, route target hits, lineage use, reads."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from broker.bus.lineage import RootUse
from broker.bus.log import (
    AppendResult,
    EventItem,
    EventLog,
    EventWrites,
    StoredEvent,
    TargetRecord,
)
from broker.filters.narrow import NARROW_ATTRIBUTES, Narrowing
from broker.store.keys import CAUSATION, CORRELATION, IDENTITY, identity_key, link_key
from broker.store.sqlite.connections import ReaderPool, beside_held, held_rows, insert_later
from broker.store.sqlite.periods import VIEW, KeyPeriods, union_all
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction
from broker.store.window import DedupeWindow

EVENT_COLUMNS = "seq, recvtime, body, routes, root"
KEY_SEQS = f"SELECT seq FROM {VIEW} WHERE key = ? AND kind = ?"
"""Seqs of one key in every period's table and the kept keys (one index probe each)."""


def row_to_event(row: Sequence[Any]) -> StoredEvent:
    routes = tuple(orjson.loads(row[3])) if row[3] else ()
    return StoredEvent(row[0], row[1], bytes(row[2]), routes, root=row[4] or 0)


INSERT_EVENT = (
    "INSERT INTO events (source, id, type, subject, time, recvtime, correlationid,"
    " causationid, digest, body, root, idhash, corrkey, causekey, routes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""The last value, `routes`, is NULL when the row is made: routing decides it later,
and `set_routes` writes it into the row while the row is still held back."""
INSERT_KEY = "INSERT INTO {table} (key, kind, seq) VALUES (?, ?, ?)"
PROBE_CHUNK = 500
"""Identities probed per statement (well under SQLite's bound-parameter limit)."""


def _row(event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes, root: int,
         idhash: int) -> tuple[Any, ...]:
    corr, cause = _text(event.get("correlationid")), _text(event.get("causationid"))
    return (event["source"], event["id"], event["type"], event.get("subject"),
            event.get("time"), recvtime, corr, cause, digest, raw, root or None, idhash,
            link_key(corr), link_key(cause), None)


def identity_keys(items: Sequence[EventItem]) -> list[int]:
    """`identity_key` of each item's event, in one loop: it runs for every event
    appended in a batch."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return [from_bytes(blake2b(f"{e['source']}\0{e['id']}".encode(), digest_size=8).digest(),
                       "big", signed=True) for e, _, _ in items]


def _keys(row: tuple[Any, ...], seq: int) -> list[tuple[int, int, int]]:
    """The key-table rows of one event row (`_row`'s layout)."""
    keys = [(row[11], IDENTITY, seq)]
    if row[12] is not None:
        keys.append((row[12], CORRELATION, seq))
    if row[13] is not None:
        keys.append((row[13], CAUSATION, seq))
    return keys


class _HeldBatch:
    """Event rows held back (`insert_later`) with their key rows, while they wait: an
    append of the same transaction joins them instead of running them first."""

    __slots__ = ("first", "keys", "rows", "seqs", "table")

    def __init__(self, first: int, rows: list[tuple[Any, ...]],
                 keys: list[tuple[int, int, int]], table: str) -> None:
        self.first = first
        self.rows = rows
        self.keys = keys
        self.table = table
        self.seqs: dict[int, list[int]] = {}
        """Identity key -> seqs of the held rows with it."""

    @property
    def next_seq(self) -> int:
        """The seq the next row gets: AUTOINCREMENT's, once the held rows have run."""
        return self.first + len(self.rows)

    def add(self, row: tuple[Any, ...], keys: list[tuple[int, int, int]]) -> int:
        seq = self.next_seq
        self.rows.append(row)
        self.keys.extend(keys)
        self.seqs.setdefault(row[11], []).append(seq)
        return seq

    def find(self, source: str, id: str, idhash: int) -> tuple[int, bytes] | None:
        """(seq, digest) of the newest held row with this identity. A savepoint rolled
        back drops the rows held since it: seqs past the rows, or of another row now,
        are stale."""
        for seq in reversed(self.seqs.get(idhash, ())):
            at = seq - self.first
            if at < len(self.rows):
                row = self.rows[at]
                if row[0] == source and row[1] == id:
                    return seq, row[8]
        return None


class SqliteEventWrites(EventWrites):
    """Event-log writes on the writer connection. Dedupe is decided here, by the single
    writer: a probe of the key tables of the periods the dedupe window reaches (and the
    kept keys), then a plain insert of the event and of its keys into the current
    period's table (a repeat outside the window is stored)."""

    def __init__(self, conn: sqlite3.Connection, window: DedupeWindow,
                 periods: KeyPeriods) -> None:
        self.conn = conn
        self.window = window
        self.periods = periods
        self._held: _HeldBatch | None = None
        """The last batch of event rows held back."""

    def _live(self) -> _HeldBatch | None:
        """The held batch while its rows still wait and no other event rows do: appends
        may join it, and statements that read the log may run beside it (what it
        holds is looked up in it)."""
        batch = self._held
        if batch is None or not held_rows(self.conn, batch.rows):
            return None
        if any(sql == INSERT_EVENT and rows is not batch.rows
               for sql, rows in getattr(self.conn, "held", ())):
            return None
        return batch

    def _probe(self, keys: Sequence[int], recvtime: str, batch: _HeldBatch | None = None
               ) -> dict[tuple[str, str], tuple[int, bytes]]:
        """(source, id) -> (seq, digest) of the newest stored event in the window (the
        rows of `batch` not included: the caller looks there first)."""
        since = self.window.start(recvtime)
        tables = self.periods.window(self.conn, since)
        found: dict[tuple[str, str], tuple[int, bytes]] = {}
        unique = list(dict.fromkeys(keys))
        for at in range(0, len(unique), PROBE_CHUNK):
            chunk = unique[at:at + PROBE_CHUNK]
            marks = ", ".join(f"?{n}" for n in range(1, len(chunk) + 1))
            probes = union_all([f"SELECT seq FROM {t} WHERE key IN ({marks}) AND kind = 0"
                                for t in tables])
            # The key tables hold every identity of their period; the window's edge and
            # the stored (source, id) (a 64-bit key may collide) are checked on the row.
            # `+recvtime`: the window only narrows the hits, it must never make the
            # planner walk the recvtime index instead.
            sql = (f"SELECT seq, source, id, digest FROM events WHERE seq IN ({probes})"
                   f" AND +recvtime >= ?{len(chunk) + 1} ORDER BY seq")
            params = (*chunk, since)
            # Beside a live batch: its rows are looked up in it, and nothing else held
            # changes what this reads.
            rows = (beside_held(self.conn, sql, params) if batch is not None
                    else self.conn.execute(sql, params)).fetchall()
            for seq, source, id, digest in rows:
                found[(source, id)] = (seq, bytes(digest))
        return found

    def _next_seq(self) -> int:
        (high,) = self.conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        ).fetchone()
        return int(high) + 1

    def _table(self, recvtime: str, next_seq: int | None = None) -> str:
        """The current period's key table, opened here (from `next_seq`, by default the
        next seq AUTOINCREMENT gives) if `recvtime` is past its end."""
        found = self.periods.current(self.conn, recvtime)
        if found is None:
            first = self._next_seq() if next_seq is None else next_seq
            found = self.periods.open(self.conn, recvtime, first).name
        return found

    async def append(
        self, event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes, root: int = 0
    ) -> AppendResult:
        source, id = event["source"], event["id"]
        idhash = identity_key(str(source), str(id))
        batch = self._live()
        stored = batch.find(source, id, idhash) if batch is not None else None
        if stored is None:
            stored = self._probe([idhash], recvtime, batch).get((source, id))
        if stored is not None:
            return AppendResult(stored[0], True, conflict=stored[1] != digest)
        row = _row(event, raw, recvtime, digest, root, idhash)
        if batch is not None:
            # A derived event (an item's announcement) while the routed batch waits:
            # it joins the batch, so the whole commit is still inserted off the loop.
            table = self._table(recvtime, batch.next_seq)
            if table == batch.table and self._live() is batch:
                seq = batch.next_seq
                return AppendResult(batch.add(row, _keys(row, seq)), False)
        table = self._table(recvtime)
        (seq,) = self.conn.execute(INSERT_EVENT + " RETURNING seq", row).fetchone()
        self.conn.executemany(INSERT_KEY.format(table=table), _keys(row, seq))
        return AppendResult(seq, False)

    async def append_many(self, items: Sequence[EventItem], recvtime: str
                          ) -> list[AppendResult]:
        if len(items) == 1:
            event, raw, digest = items[0]
            return [await self.append(event, raw, recvtime, digest)]
        keys = identity_keys(items)
        batch = self._live()
        stored = self._probe(keys, recvtime, batch)
        if batch is not None:  # its rows are newer than any stored one
            for (event, _, _), idhash in zip(items, keys, strict=True):
                held = batch.find(event["source"], event["id"], idhash)
                if held is not None:
                    stored[(event["source"], event["id"])] = held
        first = batch.next_seq if batch is not None else self._next_seq()
        new = tuple.__new__  # AppendResult without its Python frame, once per event
        results: list[AppendResult] = []
        rows: list[tuple[Any, ...]] = []
        key_rows: list[tuple[int, int, int]] = []
        for (event, raw, digest), idhash in zip(items, keys, strict=True):
            key = (event["source"], event["id"])
            earlier = stored.get(key)
            if earlier is not None:  # in the window, or earlier in this batch
                results.append(AppendResult(earlier[0], True, conflict=earlier[1] != digest))
                continue
            # Seqs of one batch are consecutive: AUTOINCREMENT under the single writer.
            seq = first + len(rows)
            stored[key] = (seq, digest)
            get = event.get
            if get("correlationid") is None and get("causationid") is None:
                # A root a client published (nearly every event of a batch): `_row` and
                # `_keys` spelled out, without links, as they run once per event.
                rows.append((key[0], key[1], event["type"], get("subject"), get("time"),
                             recvtime, None, None, digest, raw, None, idhash, None, None,
                             None))
                key_rows.append((idhash, IDENTITY, seq))
            else:
                row = _row(event, raw, recvtime, digest, 0, idhash)
                rows.append(row)
                key_rows.extend(_keys(row, seq))
            results.append(new(AppendResult, (seq, False, False, False)))
        if rows:  # a period is opened only by an event that goes into it
            table = self._table(recvtime, first)
            if batch is not None and table == batch.table and self._live() is batch:
                for row in rows:
                    batch.add(row, [])
                batch.keys.extend(key_rows)
                return results
            # Held back to the transaction's next statement or its COMMIT: a batch
            # nothing else reads is then inserted off the event loop.
            insert_later(self.conn, INSERT_EVENT, rows)
            insert_later(self.conn, INSERT_KEY.format(table=table), key_rows)
            self._held = _HeldBatch(first, rows, key_rows, table)
            for at, row in enumerate(rows):
                self._held.seqs.setdefault(row[11], []).append(first + at)
        return results

    async def set_routes(self, items: Sequence[tuple[int, Sequence[str]]]) -> None:
        # An event whose row is still held back gets its routes in that row: it is
        # written once. Any other is updated (after the held rows, before COMMIT).
        batch = self._held
        first, rows = (batch.first, batch.rows) if (
            batch is not None and held_rows(self.conn, batch.rows)) else (0, [])
        updates = []
        for seq, routes in items:
            encoded = orjson.dumps(list(routes))
            at = seq - first
            if 0 <= at < len(rows):
                rows[at] = (*rows[at][:-1], encoded)
            else:
                updates.append((encoded, seq))
        if updates:
            insert_later(self.conn, "UPDATE events SET routes = ? WHERE seq = ?", updates)

    async def root_use(self, root: int) -> RootUse:
        row = self.conn.execute(
            "SELECT descendants, noticed FROM event_lineage WHERE root = ?", (root,)
        ).fetchone()
        return RootUse(row[0], bool(row[1])) if row else RootUse()

    async def add_root_use(self, changes: Sequence[tuple[int, int, bool]]) -> None:
        # Held back like the inserts: nothing reads it before COMMIT but `root_use`,
        # and any other statement runs the held ones first.
        insert_later(
            self.conn,
            "INSERT INTO event_lineage (root, descendants, noticed) VALUES (?, ?, ?)"
            " ON CONFLICT (root) DO UPDATE SET descendants = descendants"
            " + excluded.descendants, noticed = max(noticed, excluded.noticed)",
            [(root, added, int(noticed)) for root, added, noticed in changes],
        )

    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        insert_later(
            self.conn,
            "INSERT OR IGNORE INTO event_targets (seq, route, target, detail)"
            " VALUES (?, ?, ?, ?)",
            [(r.seq, r.route, r.target, orjson.dumps(r.detail) if r.detail else None)
             for r in records],
        )


class SqliteEventLog(EventLog):
    """The event log in the `events` table, its keys in the period tables
    (`periods.py`); reads on the reader pool, keys through the `event_keys` view."""

    def __init__(self, readers: ReaderPool, window: DedupeWindow | None = None) -> None:
        self._readers = readers
        self.window = window or DedupeWindow()
        self.periods = KeyPeriods(self.window.period_s)

    def writes(self, tx: Transaction) -> SqliteEventWrites:
        return SqliteEventWrites(connection_of(tx), self.window, self.periods)

    async def last_seq(self) -> int:
        row = await self._readers.fetchone("SELECT max(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def first_seq(self) -> int:
        row = await self._readers.fetchone("SELECT min(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def retained_from(self) -> int:
        row = await self._readers.fetchone("SELECT cut FROM log_retention WHERE id = 1")
        return int(row[0]) + 1 if row else 1

    async def get(self, seq: int) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?", (seq,)
        )
        return row_to_event(row) if row else None

    async def find(self, source: str, id: str) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN ({KEY_SEQS})"
            " AND source = ? AND id = ? ORDER BY seq DESC LIMIT 1",
            (identity_key(source, id), IDENTITY, source, id)
        )
        return row_to_event(row) if row else None

    async def read(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        type: str | None = None,
        source: str | None = None,
        subject: str | None = None,
        since: str | None = None,
        until: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        id: str | None = None,
        descending: bool = False,
        scan_to: int | None = None,
        narrow: Narrowing = (),
    ) -> list[StoredEvent]:
        clauses: list[str] = []
        params: list[Any] = []
        if descending:
            if after > 0:
                clauses.append("seq < ?")
                params.append(after)
        else:
            clauses.append("seq > ?")
            params.append(after)
        if scan_to is not None:
            clauses.append("seq >= ?" if descending else "seq <= ?")
            params.append(scan_to)
        if source is not None and id is not None:
            clauses.append(f"seq IN ({KEY_SEQS})")
            params.extend((identity_key(source, id), IDENTITY))
        for column, value in (("type", type), ("source", source), ("subject", subject),
                              ("id", id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for column, kind, value in (("correlationid", CORRELATION, correlationid),
                                    ("causationid", CAUSATION, causationid)):
            if value is not None:
                clauses.extend((f"seq IN ({KEY_SEQS})", f"{column} = ?"))
                params.extend((link_key(value), kind, value))
        if narrow:
            clauses.extend(narrow_clauses(narrow, params))
        if since is not None:
            clauses.append("recvtime >= ?")
            params.append(since)
        if until is not None:
            clauses.append("recvtime < ?")
            params.append(until)
        where = " AND ".join(clauses) or "1"
        order = "DESC" if descending else "ASC"
        rows = await self._readers.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq {order} LIMIT ?",
            (*params, limit),
        )
        return [row_to_event(r) for r in rows]

    async def count(self) -> int:
        row = await self._readers.fetchone("SELECT count(*) FROM events")
        return int(row[0]) if row else 0

    async def targets_of(self, seq: int) -> list[TargetRecord]:
        rows = await self._readers.fetchall(
            "SELECT seq, route, target, detail FROM event_targets WHERE seq = ?"
            " ORDER BY route, target", (seq,)
        )
        return [TargetRecord(r[0], r[1], r[2], orjson.loads(r[3]) if r[3] else {})
                for r in rows]


def narrow_clauses(narrow: Narrowing, params: list[Any]) -> list[str]:
    """`narrow` as SQL conditions with `?` placeholders (values appended to `params`).
    SQLite's LIKE folds ASCII case: a looser test, which a narrowing may be."""
    clauses = []
    for n in narrow:
        if n.attribute not in NARROW_ATTRIBUTES:
            raise ValueError(f"no column to narrow by {n.attribute!r}")
        terms = []
        if n.exact:
            terms.append(f"{n.attribute} IN ({', '.join('?' * len(n.exact))})")
            params.extend(sorted(n.exact))
        for pattern in sorted(n.patterns):
            terms.append(f"{n.attribute} LIKE ? ESCAPE '\\'")
            params.append(pattern)
        clauses.append("(" + " OR ".join(terms or ["0"]) + ")")
    return clauses


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
