"""SQLite statements for the event log: appends, route target hits, lineage use, reads."""

from __future__ import annotations

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
from broker.store.sqlite.connections import ReaderPool
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction

EVENT_COLUMNS = "seq, recvtime, body, routes, root"


def row_to_event(row: Sequence[Any]) -> StoredEvent:
    routes = tuple(orjson.loads(row[3])) if row[3] else ()
    return StoredEvent(row[0], row[1], bytes(row[2]), routes, root=row[4] or 0)


class SqliteEventWrites(EventWrites):
    """Event-log writes on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def append(
        self, event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes, root: int = 0
    ) -> AppendResult:
        row = self.conn.execute(
            "INSERT INTO events (source, id, type, subject, time, recvtime, correlationid,"
            " causationid, digest, body, root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source, id) DO NOTHING RETURNING seq",
            (
                event["source"], event["id"], event["type"], event.get("subject"),
                event.get("time"), recvtime, _text(event.get("correlationid")),
                _text(event.get("causationid")), digest, raw, root or None,
            ),
        ).fetchone()
        if row is not None:
            return AppendResult(row[0], False)
        seq, stored_digest = self.conn.execute(
            "SELECT seq, digest FROM events WHERE source = ? AND id = ?",
            (event["source"], event["id"]),
        ).fetchone()
        return AppendResult(seq, True, conflict=bytes(stored_digest) != digest)

    async def append_many(self, items: Sequence[EventItem], recvtime: str
                          ) -> list[AppendResult]:
        if len(items) == 1:  # one statement instead of three for the common case
            event, raw, digest = items[0]
            return [await self.append(event, raw, recvtime, digest)]
        rows = [
            (e["source"], e["id"], e["type"], e.get("subject"), e.get("time"), recvtime,
             _text(e.get("correlationid")), _text(e.get("causationid")), digest, raw)
            for e, raw, digest in items
        ]
        before = self.conn.total_changes
        (high,) = self.conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        ).fetchone()
        # One C-level loop for the whole batch; seqs of a batch without repeats are
        # consecutive (AUTOINCREMENT under the single writer).
        self.conn.executemany(
            "INSERT INTO events (source, id, type, subject, time, recvtime, correlationid,"
            " causationid, digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source, id) DO NOTHING",
            rows,
        )
        if self.conn.total_changes - before == len(rows):
            return [AppendResult(seq, False) for seq in range(high + 1, high + 1 + len(rows))]
        results = []
        first_seen: dict[tuple[str, str], bytes] = {}
        for event, _, digest in items:
            key = (event["source"], event["id"])
            seq, stored = self.conn.execute(
                "SELECT seq, digest FROM events WHERE source = ? AND id = ?", key
            ).fetchone()
            if seq > high and key not in first_seen:
                first_seen[key] = digest
                results.append(AppendResult(seq, False))
            else:
                original = first_seen.get(key, bytes(stored))
                results.append(AppendResult(seq, True, conflict=original != digest))
        return results

    async def set_routes(self, items: Sequence[tuple[int, Sequence[str]]]) -> None:
        self.conn.executemany(
            "UPDATE events SET routes = ? WHERE seq = ?",
            [(orjson.dumps(list(routes)), seq) for seq, routes in items],
        )

    async def root_use(self, root: int) -> RootUse:
        row = self.conn.execute(
            "SELECT descendants, noticed FROM event_lineage WHERE root = ?", (root,)
        ).fetchone()
        return RootUse(row[0], bool(row[1])) if row else RootUse()

    async def add_root_use(self, changes: Sequence[tuple[int, int, bool]]) -> None:
        self.conn.executemany(
            "INSERT INTO event_lineage (root, descendants, noticed) VALUES (?, ?, ?)"
            " ON CONFLICT (root) DO UPDATE SET descendants = descendants"
            " + excluded.descendants, noticed = max(noticed, excluded.noticed)",
            [(root, added, int(noticed)) for root, added, noticed in changes],
        )

    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO event_targets (seq, route, target, detail)"
            " VALUES (?, ?, ?, ?)",
            [(r.seq, r.route, r.target, orjson.dumps(r.detail) if r.detail else None)
             for r in records],
        )


class SqliteEventLog(EventLog):
    """The event log in the `events` table; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteEventWrites:
        return SqliteEventWrites(connection_of(tx))

    async def last_seq(self) -> int:
        row = await self._readers.fetchone("SELECT max(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def first_seq(self) -> int:
        row = await self._readers.fetchone("SELECT min(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def get(self, seq: int) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?", (seq,)
        )
        return row_to_event(row) if row else None

    async def find(self, source: str, id: str) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE source = ? AND id = ?", (source, id)
        )
        return row_to_event(row) if row else None

    async def find_by_id(self, id: str) -> list[StoredEvent]:
        rows = await self._readers.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? ORDER BY seq", (id,)
        )
        return [row_to_event(r) for r in rows]

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
        for column, value in (("type", type), ("source", source), ("subject", subject),
                              ("correlationid", correlationid),
                              ("causationid", causationid), ("id", id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
