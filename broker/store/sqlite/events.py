"""SQLite statements for the event log, route target hits and configuration objects."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from broker.lineage import RootUse
from broker.store.records import AppendResult, ConfigObject, StoredEvent, TargetRecord

EVENT_COLUMNS = "seq, recvtime, body, routes, root"


def row_to_event(row: Sequence[Any]) -> StoredEvent:
    routes = tuple(orjson.loads(row[3])) if row[3] else ()
    return StoredEvent(row[0], row[1], bytes(row[2]), routes, root=row[4] or 0)


def row_to_config(row: Sequence[Any]) -> ConfigObject:
    return ConfigObject(row[0], row[1], orjson.loads(row[2]), row[3], row[4], row[5])


class EventWrites:
    """Event-log writes on the writer connection (mixed into the SQLite transaction)."""

    conn: sqlite3.Connection

    async def append_event(
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

    async def append_events(
        self, items: Sequence[tuple[dict[str, Any], bytes, bytes]], recvtime: str
    ) -> list[AppendResult]:
        if len(items) == 1:  # one statement instead of three for the common case
            event, raw, digest = items[0]
            return [await self.append_event(event, raw, recvtime, digest)]
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

    async def set_routes(self, seq: int, routes: Sequence[str]) -> None:
        self.conn.execute(
            "UPDATE events SET routes = ? WHERE seq = ?", (orjson.dumps(list(routes)), seq)
        )

    async def set_routes_many(self, items: Sequence[tuple[int, Sequence[str]]]) -> None:
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

    async def put_config(
        self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
    ) -> ConfigObject:
        version = self._bump_config_version()
        self.conn.execute(
            "INSERT INTO config_objects (kind, name, spec, origin, version, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET"
            " spec = excluded.spec, origin = excluded.origin, version = excluded.version,"
            " updated_at = excluded.updated_at",
            (kind, name, orjson.dumps(spec).decode(), origin, version, now),
        )
        return ConfigObject(kind, name, spec, origin, version, now)

    async def delete_config(self, kind: str, name: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM config_objects WHERE kind = ? AND name = ?", (kind, name)
        )
        if cursor.rowcount:
            self._bump_config_version()
        return cursor.rowcount > 0

    def _bump_config_version(self) -> int:
        (version,) = self.conn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'config_version'"
            " RETURNING value"
        ).fetchone()
        return int(version)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
