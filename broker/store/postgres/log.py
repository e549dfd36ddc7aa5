"""The event log on PostgreSQL: the append call and the reads by seq."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from broker.bus.log import AppendResult, StoredEvent
from broker.store.keys import identity_key, link_key
from broker.store.postgres.queries import query

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

DEFAULT_PERIOD_S = 86400
DEFAULT_WINDOW = 2
"""Periods a repeated (source, id) is recognised for (0: forever); `dedupe_window`."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append: the validated attributes, their canonical JSON and digest,
    and the seq of the root event it derives from (0: it is a root)."""

    event: dict[str, Any]
    raw: bytes
    digest: bytes
    root: int = 0


def period_of(recvtime: str, period_s: int) -> int:
    """The start (epoch seconds) of the period that `recvtime` (RFC 3339) falls in; a
    recvtime that is not a timestamp gives 0, which files the batch under the current
    partition (periods never go backwards)."""
    try:
        moment = datetime.fromisoformat(recvtime.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch = int(moment.timestamp())
    return epoch - epoch % period_s


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


async def append(
    conn: Conn, items: Sequence[NewEvent], recvtime: str,
    period_s: int = DEFAULT_PERIOD_S, window: int = DEFAULT_WINDOW,
) -> list[AppendResult]:
    """Append `items` in order inside the caller's transaction (one round trip). An
    identity repeated inside `items` is a duplicate of its first occurrence. The caller
    must commit promptly: from this call on it holds the log's lock."""
    if not items:
        return []
    first: dict[tuple[str, str], int] = {}
    unique: list[NewEvent] = []
    for item in items:
        key = (str(item.event["source"]), str(item.event["id"]))
        if key not in first:
            first[key] = len(unique)
            unique.append(item)
    columns: list[list[Any]] = [[] for _ in range(13)]
    for item in unique:
        e = item.event
        corr, cause = _text(e.get("correlationid")), _text(e.get("causationid"))
        for column, value in zip(columns, (
            identity_key(str(e["source"]), str(e["id"])), str(e["source"]), str(e["id"]),
            str(e["type"]), _text(e.get("subject")), _text(e.get("time")), corr, cause,
            link_key(corr), link_key(cause), item.digest, item.root, item.raw,
        ), strict=True):
            column.append(value)
    rows = await conn.fetch(query("append"), period_of(recvtime, period_s), period_s,
                            window, recvtime, *columns)
    results: list[AppendResult] = []
    answered: set[tuple[str, str]] = set()
    for item in items:
        key = (str(item.event["source"]), str(item.event["id"]))
        index = first[key]
        row = rows[index]
        if key in answered:  # a repeat of an earlier item of this call
            results.append(AppendResult(row["seq"], True,
                                        conflict=unique[index].digest != item.digest))
        else:
            answered.add(key)
            results.append(AppendResult(row["seq"], row["duplicate"], row["conflict"]))
    return results


def row_to_event(row: asyncpg.Record) -> StoredEvent:
    routes = tuple(orjson.loads(row["routes"])) if row["routes"] else ()
    return StoredEvent(row["seq"], row["recvtime"], bytes(row["body"]), routes,
                       root=row["root"] or 0)


async def committed_head(conn: Conn | asyncpg.Pool) -> int:
    """The highest committed seq (0 for an empty log)."""
    return int(await conn.fetchval(query("committed_head")) or 0)


async def read_after(conn: Conn | asyncpg.Pool, after: int, limit: int
                     ) -> list[StoredEvent]:
    """Committed events with seq > after, in seq order."""
    return [row_to_event(r) for r in await conn.fetch(query("read_after"), after, limit)]


async def ensure_partition(conn: Conn | asyncpg.Pool, recvtime: str,
                           period_s: int = DEFAULT_PERIOD_S) -> str:
    """Create the partition `recvtime` falls in if missing; its name."""
    return str(await conn.fetchval(query("ensure_partition"),
                                   period_of(recvtime, period_s), period_s))


async def read_range(conn: Conn | asyncpg.Pool, after: int, upto: int,
                     limit: int) -> list[StoredEvent]:
    """Committed events with after < seq <= upto, in seq order (at most `limit`)."""
    rows = await conn.fetch(query("read_range"), after, upto, limit)
    return [row_to_event(r) for r in rows]
