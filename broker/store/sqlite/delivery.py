"""SQLite statements for deliveries, their attempts, subscription controls and breakers."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

from broker.bus.log import StoredEvent
from broker.delivery.breaker import BreakerState, SubscriptionHealth
from broker.delivery.model import (
    NEXT_STATE,
    NEXT_STATE_TEXT,
    OUTCOME_TEXT,
    Attempt,
    Delivery,
    DeliveryState,
    LeaseBatch,
    LeasedDelivery,
    Outcome,
    Settlement,
    SubscriptionControl,
)
from broker.delivery.repository import DeliveryRepository, DeliveryWrites
from broker.store.sqlite.connections import ReaderPool, insert_later
from broker.store.sqlite.events import EVENT_COLUMNS, pieces, row_to_event, rows_sql
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction
from broker.timeutil import later

DELIVERY_COLUMNS = ("id, subscription, seq, state, attempts, attempts_before, next_at, lease,"
                    " last_status, last_error, first_at, created_at, updated_at")
OPEN = "state IN ('pending', 'leased')"
HEALTH_COLUMNS = ("subscription, state, consecutive_failures, reopen_at, last_error,"
                  " updated_at")


def row_to_health(row: Sequence[Any]) -> SubscriptionHealth:
    return SubscriptionHealth(row[0], BreakerState(row[1]), row[2], row[3], row[4], row[5])


def row_to_delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(row[0], row[1], row[2], DeliveryState(row[3]), row[4], row[5], row[6],
                    row[7], row[8], row[9], row[10], row[11], row[12])


def new_lease(row_id: int, attempt: int, secret: str | None = None) -> str:
    """`<id>.<attempt>.<random>`: one token per attempt, unguessable, readable in logs.
    One claim may share `secret` among its leases: `<id>.<attempt>` keeps them unique."""
    return f"{row_id}.{attempt}.{secret or secrets.token_urlsafe(9)}"


class SqliteDeliveryWrites(DeliveryWrites):
    """Delivery writes on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def add(self, subscription: str, seq: int, now: str) -> int | None:
        row = self.conn.execute(
            "INSERT INTO deliveries (subscription, seq, state, next_at, first_at, created_at,"
            " updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)"
            " ON CONFLICT (subscription, seq) DO NOTHING RETURNING id",
            (subscription, seq, now, now, now, now),
        ).fetchone()
        return int(row[0]) if row else None

    async def lease(
        self, subscription: str, limit: int, now: str, lease_s: float, *,
        max_attempts: int, ordered: bool = False, only_exhausted: bool = False,
    ) -> LeaseBatch:
        if limit <= 0:
            return LeaseBatch([], [])
        if ordered:
            rows = self.conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription = ? AND {OPEN}"
                " ORDER BY seq LIMIT 1", (subscription,)).fetchall()
            rows = [r for r in rows if r[6] <= now]
        else:
            # In seq order along the open-by-seq index, stopping at `limit`: planned on
            # the due index instead, every claim sorted the whole due backlog.
            rows = self.conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries INDEXED BY deliveries_open_by_seq"
                f" WHERE subscription = ? AND {OPEN} AND next_at <= ? ORDER BY seq LIMIT ?",
                (subscription, now, limit)).fetchall()
        stamp = now
        expires = later(now, lease_s)
        secret = secrets.token_urlsafe(9)
        leased: list[Delivery] = []
        exhausted: list[Delivery] = []
        expired: list[tuple[Any, ...]] = []
        leased_state = DeliveryState.LEASED  # read once: see `push._DELIVERED`
        for row in rows:
            # Columns: id, subscription, seq, state, attempts, attempts_before, ...
            round_attempts = row[4] - row[5]
            if only_exhausted and round_attempts < max_attempts:
                continue
            if row[3] == "leased":
                expired.append((Outcome.EXPIRED.value, None, None, "lease expired",
                                row[0], row[4]))
            if round_attempts >= max_attempts:
                exhausted.append(row_to_delivery(row))
                continue
            attempt = row[4] + 1
            # Built directly rather than read and `replace`d: a claim takes a round.
            leased.append(Delivery(row[0], row[1], row[2], leased_state, attempt,
                                   row[5], expires, new_lease(row[0], attempt, secret),
                                   row[8], row[9], row[10], row[11], stamp))
        events = events_by_seq(self.conn, [d.seq for d in (*leased, *exhausted)])
        # One statement per kind for the whole claim (a claim takes a round of them),
        # held to the transaction's end: nothing reads them before a later statement
        # on this connection, which runs them first.
        if expired:
            insert_later(self.conn, END_ATTEMPT, expired)
        if exhausted:
            insert_later(
                self.conn, "UPDATE deliveries SET state = 'deadlettered', lease = NULL,"
                " last_error = coalesce(last_error, 'lease expired'), updated_at = ?"
                " WHERE id = ?", [(stamp, d.id) for d in exhausted])
        if leased:
            hold_rows(self.conn, CLAIMED, [(d.attempts, d.lease, d.id) for d in leased],
                      (expires, stamp))
            hold_rows(self.conn, ATTEMPTS_STARTED,
                      [(d.id, d.attempts, d.lease, stamp) for d in leased])
        return LeaseBatch([LeasedDelivery(d, events[d.seq]) for d in leased],
                          [LeasedDelivery(d, events[d.seq]) for d in exhausted])

    async def settle(
        self, delivery_id: int, lease: str, outcome: Outcome, now: str, *,
        next_at: str | None = None, status: int | None = None,
        latency_ms: float | None = None, error: str | None = None,
        require_live: bool = False, subscription: str | None = None,
    ) -> Delivery | None:
        row = self.conn.execute(
            "SELECT attempts, next_at, subscription FROM deliveries WHERE id = ?"
            " AND state = 'leased' AND lease = ?", (delivery_id, lease)).fetchone()
        if row is None or (require_live and row[1] <= now) \
                or (subscription is not None and row[2] != subscription):
            return None
        state = NEXT_STATE[outcome]
        keep_lease = state is DeliveryState.LEASED
        unsent = outcome is Outcome.UNSENT
        updated = self.conn.execute(
            f"UPDATE deliveries SET state = ?, lease = ?, next_at = ?, attempts = attempts - ?,"
            f" last_status = coalesce(?, last_status), last_error = ?, updated_at = ?"
            f" WHERE id = ? RETURNING {DELIVERY_COLUMNS}",
            (state.value, lease if keep_lease else None,
             next_at if next_at is not None else now, int(unsent), status,
             error if outcome is not Outcome.RENEWED else None, now, delivery_id),
        ).fetchone()
        if unsent:
            self.conn.execute(DROP_ATTEMPT, (delivery_id, row[0]))
        elif outcome is not Outcome.RENEWED:
            self._end_attempt(delivery_id, row[0], outcome, status, latency_ms, error)
        return row_to_delivery(updated)

    async def requeue(self, delivery_id: int, now: str) -> Delivery | None:
        row = self.conn.execute(
            f"UPDATE deliveries SET state = 'pending', attempts_before = attempts, next_at = ?,"
            f" first_at = ?, lease = NULL, updated_at = ?"
            f" WHERE id = ? AND state = 'deadlettered' RETURNING {DELIVERY_COLUMNS}",
            (now, now, now, delivery_id)).fetchone()
        return row_to_delivery(row) if row else None

    async def set_paused(self, subscription: str, paused: bool, by: str | None,
                         now: str) -> SubscriptionControl:
        self.conn.execute(
            "INSERT INTO subscription_controls (name, paused, paused_by, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,"
            " paused_by = excluded.paused_by, updated_at = excluded.updated_at",
            (subscription, int(paused), by, now))
        return SubscriptionControl(subscription, paused, by, now)

    async def breaker(self, subscription: str) -> SubscriptionHealth | None:
        row = self.conn.execute(
            f"SELECT {HEALTH_COLUMNS} FROM subscription_health WHERE subscription = ?",
            (subscription,)).fetchone()
        return row_to_health(row) if row else None

    async def save_breaker(self, health: SubscriptionHealth) -> None:
        self.conn.execute(
            f"INSERT OR REPLACE INTO subscription_health ({HEALTH_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (health.subscription, health.state.value, health.consecutive_failures,
             health.reopen_at, health.last_error, health.updated_at))

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        # Each row changes only under its current lease; the attempt first, while the
        # delivery still names that lease. Held to the transaction's end, as a claim's.
        if len({s.delivery_id for s in settlements}) < len(settlements):
            # A delivery twice: one after the other, in order. A statement joining the
            # batch checks every row's lease before it changes any, so both would pass.
            insert_later(self.conn, END_LEASED_ATTEMPT, [
                (OUTCOME_TEXT[s.outcome], s.status, s.latency_ms, s.error, s.delivery_id,
                 s.delivery_id, s.lease) for s in settlements])
            insert_later(self.conn, SETTLE_LEASED, [
                (NEXT_STATE_TEXT[s.outcome], s.next_at if s.next_at is not None else s.now,
                 s.status, s.error, s.now, s.delivery_id, s.lease) for s in settlements])
            return
        hold_rows(self.conn, LEASED_ATTEMPTS_ENDED, [
            (OUTCOME_TEXT[s.outcome], s.status, s.latency_ms, s.error, s.delivery_id, s.lease)
            for s in settlements])
        hold_rows(self.conn, LEASED_SETTLED, [
            (NEXT_STATE_TEXT[s.outcome], s.next_at if s.next_at is not None else s.now,
             s.status, s.error, s.now, s.delivery_id, s.lease) for s in settlements])

    def _end_attempt(self, delivery_id: int, n: int, outcome: Outcome,
                     status: int | None = None, latency_ms: float | None = None,
                     error: str | None = None) -> None:
        self.conn.execute(END_ATTEMPT, (outcome.value, status, latency_ms, error,
                                        delivery_id, n))


# A claim's and a batch of results' rows go many to a statement (`hold_rows`), not one
# `executemany` step each: every step set its cursors up again and, on the commit
# thread, waited for the GIL. Each statement is (text, one row's placeholders), the
# rows joined by a VALUES list as their `executemany` form would take them one by one.
CLAIMED = (
    "WITH claimed (attempts, lease, id) AS (VALUES {rows})"
    " UPDATE deliveries SET state = 'leased', attempts = claimed.attempts,"
    " lease = claimed.lease, next_at = ?, updated_at = ? FROM claimed"
    " WHERE deliveries.id = claimed.id", "(?, ?, ?)")
"""The claimed deliveries' new attempt and lease; then the lease's expiry and the
claim's time, shared by all."""
ATTEMPTS_STARTED = (
    "INSERT INTO delivery_attempts (delivery_id, n, lease, started_at, outcome)"
    " VALUES {rows}", "(?, ?, ?, ?, 'leased')")
LEASED_ATTEMPTS_ENDED = (
    "WITH settled (outcome, status, latency_ms, error, id, lease) AS (VALUES {rows})"
    " UPDATE delivery_attempts SET outcome = settled.outcome, status = settled.status,"
    " latency_ms = settled.latency_ms, error = settled.error"
    " FROM settled JOIN deliveries ON deliveries.id = settled.id"
    " AND deliveries.state = 'leased' AND deliveries.lease = settled.lease"
    " WHERE delivery_attempts.delivery_id = settled.id"
    " AND delivery_attempts.n = deliveries.attempts AND delivery_attempts.outcome = 'leased'",
    "(?, ?, ?, ?, ?, ?)")
"""`END_LEASED_ATTEMPT` for a batch of deliveries, each one at most once."""
LEASED_SETTLED = (
    "WITH settled (state, next_at, status, error, at, id, lease) AS (VALUES {rows})"
    " UPDATE deliveries SET state = settled.state, lease = NULL, next_at = settled.next_at,"
    " last_status = coalesce(settled.status, last_status), last_error = settled.error,"
    " updated_at = settled.at FROM settled WHERE deliveries.id = settled.id"
    " AND deliveries.state = 'leased' AND deliveries.lease = settled.lease",
    "(?, ?, ?, ?, ?, ?, ?)")
"""`SETTLE_LEASED` for a batch of deliveries, each one at most once."""
END_LEASED_ATTEMPT = (
    "UPDATE delivery_attempts SET outcome = ?, status = ?, latency_ms = ?, error = ?"
    " WHERE delivery_id = ? AND n = (SELECT attempts FROM deliveries WHERE id = ?"
    " AND state = 'leased' AND lease = ?) AND outcome = 'leased'")
SETTLE_LEASED = (
    "UPDATE deliveries SET state = ?, lease = NULL, next_at = ?,"
    " last_status = coalesce(?, last_status), last_error = ?, updated_at = ?"
    " WHERE id = ? AND state = 'leased' AND lease = ?")


def hold_rows(conn: sqlite3.Connection, statement: tuple[str, str],
              rows: list[tuple[Any, ...]], shared: tuple[Any, ...] = ()) -> None:
    """`statement` for `rows`, in order, many to a statement (`pieces`), held to the
    transaction's end (`insert_later`); `shared` are the values bound after the rows'
    in each."""
    at = 0
    for count in pieces(len(rows)):
        insert_later(conn, rows_sql(statement, count),
                     [(*chain.from_iterable(rows[at:at + count]), *shared)])
        at += count


DROP_ATTEMPT = ("DELETE FROM delivery_attempts WHERE delivery_id = ? AND n = ?"
                " AND outcome = 'leased'")
END_ATTEMPT = ("UPDATE delivery_attempts SET outcome = ?, status = ?, latency_ms = ?, error = ?"
               " WHERE delivery_id = ? AND n = ? AND outcome = 'leased'")


def events_by_seq(conn: sqlite3.Connection, seqs: list[int]) -> dict[int, StoredEvent]:
    """The stored events with these seqs (read inside the transaction)."""
    if not seqs:
        return {}
    unique = sorted(set(seqs))
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN ({', '.join('?' * len(unique))})",
        unique).fetchall()
    return {row[0]: row_to_event(row) for row in rows}


class SqliteDeliveries(DeliveryRepository):
    """Deliveries, their attempts and controls; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteDeliveryWrites:
        return SqliteDeliveryWrites(connection_of(tx))

    async def get(self, delivery_id: int) -> Delivery | None:
        row = await self._readers.fetchone(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,))
        return row_to_delivery(row) if row else None

    async def page(self, subscription: str, state: str | None = None, after: int = 0,
                   limit: int = 100) -> list[Delivery]:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription = ? AND id > ?"
        params: tuple[Any, ...] = (subscription, after)
        if state is not None:
            sql += " AND state = ?"
            params += (state,)
        rows = await self._readers.fetchall(sql + " ORDER BY id LIMIT ?", (*params, limit))
        return [row_to_delivery(r) for r in rows]

    async def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        found: dict[int, list[Attempt]] = {i: [] for i in delivery_ids}
        if not delivery_ids:
            return found
        rows = await self._readers.fetchall(
            "SELECT delivery_id, n, lease, started_at, outcome, status, latency_ms, error"
            f" FROM delivery_attempts WHERE delivery_id IN ({', '.join('?' * len(found))})"
            " ORDER BY delivery_id, n", tuple(found))
        for r in rows:
            found[r[0]].append(Attempt(r[0], r[1], r[2], r[3], Outcome(r[4]), r[5], r[6], r[7]))
        return found

    async def counts(self, subscription: str) -> dict[str, int]:
        rows = await self._readers.fetchall(
            "SELECT state, count(*) FROM deliveries WHERE subscription = ? GROUP BY state",
            (subscription,))
        counts = {s.value: 0 for s in DeliveryState}
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    async def last_error(self, subscription: str) -> Delivery | None:
        row = await self._readers.fetchone(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription = ?"
            " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1", (subscription,))
        return row_to_delivery(row) if row else None

    async def next_due(self, subscription: str, ordered: bool = False) -> str | None:
        if ordered:
            row = await self._readers.fetchone(
                f"SELECT next_at FROM deliveries WHERE subscription = ? AND {OPEN}"
                " ORDER BY seq LIMIT 1", (subscription,))
        else:
            row = await self._readers.fetchone(
                f"SELECT min(next_at) FROM deliveries WHERE subscription = ? AND {OPEN}",
                (subscription,))
        return str(row[0]) if row and row[0] is not None else None

    async def count_exhausted(self, subscription: str, max_attempts: int, now: str) -> int:
        row = await self._readers.fetchone(
            f"SELECT count(*) FROM deliveries WHERE subscription = ? AND {OPEN}"
            " AND next_at <= ? AND attempts - attempts_before >= ?",
            (subscription, now, max_attempts))
        return int(row[0]) if row else 0

    async def controls(self) -> dict[str, SubscriptionControl]:
        rows = await self._readers.fetchall(
            "SELECT name, paused, paused_by, updated_at FROM subscription_controls")
        return {r[0]: SubscriptionControl(r[0], bool(r[1]), r[2], r[3]) for r in rows}

    async def breakers(self) -> dict[str, SubscriptionHealth]:
        rows = await self._readers.fetchall(f"SELECT {HEALTH_COLUMNS} FROM subscription_health")
        return {r[0]: row_to_health(r) for r in rows}
