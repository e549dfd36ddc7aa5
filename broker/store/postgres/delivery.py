"""Delivery, attempt, pause and action-job statements on PostgreSQL. Claims take due rows
with `FOR UPDATE SKIP LOCKED`, give each a fresh lease token, and every later change is
fenced by that token (docs/postgres.md, section 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from broker.actions.model import ActionJob, ClaimedJob, JobState
from broker.actions.repository import JobRepository, JobWrites
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
from broker.store.postgres import log as pglog
from broker.store.postgres.transaction import PoolSource, transaction_of
from broker.store.transaction import Transaction
from broker.timeutil import later

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

DELIVERY_COLUMNS = ("id, subscription, seq, state, attempts, attempts_before, next_at, lease,"
                    " last_status, last_error, first_at, created_at, updated_at")
JOB_COLUMNS = ("id, action, seq, state, attempts, next_at, lease, params, todo_id, operator,"
               " result_seq, last_error, created_at, updated_at")
OPEN = "state IN ('pending', 'leased')"
HEALTH_COLUMNS = ("subscription, state, consecutive_failures, reopen_at, last_error,"
                  " updated_at")


def row_to_delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(row[0], row[1], row[2], DeliveryState(row[3]), row[4], row[5], row[6],
                    row[7], row[8], row[9], row[10], row[11], row[12])


def row_to_health(row: asyncpg.Record) -> SubscriptionHealth:
    return SubscriptionHealth(row[0], BreakerState(row[1]), row[2], row[3], row[4], row[5])


def row_to_job(row: asyncpg.Record) -> ActionJob:
    return ActionJob(row[0], row[1], row[2], JobState(row[3]), row[4], row[5], row[6],
                     orjson.loads(row[7]) if row[7] else None, row[8], row[9], row[10],
                     row[11], row[12], row[13])


def new_lease(row_id: int, attempt: int) -> str:
    """`<id>.<attempt>.<random>`: one token per attempt, unguessable, readable in logs."""
    import secrets

    return f"{row_id}.{attempt}.{secrets.token_urlsafe(9)}"


class _PgWrites:
    """What delivery and job writes share: the connection and the claimed events."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _end_attempt(self, delivery_id: int, n: int, outcome: Outcome,
                           status: int | None = None, latency_ms: float | None = None,
                           error: str | None = None) -> None:
        await self.conn.execute(
            "UPDATE delivery_attempts SET outcome = $1, status = $2, latency_ms = $3,"
            " error = $4 WHERE delivery_id = $5 AND n = $6 AND outcome = 'leased'",
            outcome.value, status, latency_ms, error, delivery_id, n)

    async def _events(self, seqs: list[int]) -> dict[int, StoredEvent]:
        if not seqs:
            return {}
        rows = await self.conn.fetch(
            "SELECT seq, recvtime, body, routes, root FROM events WHERE seq = ANY ($1)",
            sorted(set(seqs)))
        return {row["seq"]: pglog.row_to_event(row) for row in rows}


class PgDeliveryWrites(_PgWrites, DeliveryWrites):
    """Delivery writes inside the transaction."""

    async def add(self, subscription: str, seq: int, now: str) -> int | None:
        found = await self.conn.fetchval(
            "INSERT INTO deliveries (subscription, seq, state, next_at, first_at, created_at,"
            " updated_at) VALUES ($1, $2, 'pending', $3, $3, $3, $3)"
            " ON CONFLICT (subscription, seq) DO NOTHING RETURNING id",
            subscription, seq, now)
        return None if found is None else int(found)

    async def lease(
        self, subscription: str, limit: int, now: str, lease_s: float, *,
        max_attempts: int, ordered: bool = False, only_exhausted: bool = False,
    ) -> LeaseBatch:
        if limit <= 0:
            return LeaseBatch([], [])
        if ordered:
            # Only the lowest open seq may go; if another replica holds it, skip the
            # subscription entirely instead of jumping ahead of it.
            rows = await self.conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = (SELECT id FROM"
                f" deliveries WHERE subscription = $1 AND {OPEN} ORDER BY seq LIMIT 1)"
                " FOR UPDATE SKIP LOCKED", subscription)
            rows = [r for r in rows if r["next_at"] <= now]
        else:
            rows = await self.conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription = $1 AND {OPEN}"
                " AND next_at <= $2 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED",
                subscription, now, limit)
        stamp = now
        expires = later(now, lease_s)
        leased: list[Delivery] = []
        exhausted: list[Delivery] = []
        for row in rows:
            current = row_to_delivery(row)
            if only_exhausted and current.round_attempts < max_attempts:
                continue
            if current.state is DeliveryState.LEASED:
                await self._end_attempt(current.id, current.attempts, Outcome.EXPIRED,
                                        error="lease expired")
            if current.round_attempts >= max_attempts:
                await self.conn.execute(
                    "UPDATE deliveries SET state = 'deadlettered', lease = NULL,"
                    " last_error = coalesce(last_error, 'lease expired'), updated_at = $1"
                    " WHERE id = $2", stamp, current.id)
                exhausted.append(current)
                continue
            attempt = current.attempts + 1
            leased.append(Delivery(
                current.id, current.subscription, current.seq, DeliveryState.LEASED, attempt,
                current.attempts_before, expires, new_lease(current.id, attempt),
                current.last_status, current.last_error, current.first_at,
                current.created_at, stamp))
        if leased:
            # The whole claim in one statement (the rows are locked by the SELECT above):
            # a round trip per delivery was most of a claim's time.
            await self.conn.execute(
                "WITH c AS (SELECT * FROM unnest($1::bigint[], $2::integer[], $3::text[])"
                " AS c (id, attempt, lease)),"
                " d AS (UPDATE deliveries SET state = 'leased', attempts = c.attempt,"
                " lease = c.lease, next_at = $4, updated_at = $5 FROM c"
                " WHERE deliveries.id = c.id)"
                " INSERT INTO delivery_attempts (delivery_id, n, lease, started_at, outcome)"
                " SELECT id, attempt, lease, $5, 'leased' FROM c",
                [d.id for d in leased], [d.attempts for d in leased],
                [d.lease for d in leased], expires, stamp)
        events = await self._events([d.seq for d in (*leased, *exhausted)])
        return LeaseBatch([LeasedDelivery(d, events[d.seq]) for d in leased],
                          [LeasedDelivery(d, events[d.seq]) for d in exhausted])

    async def settle(
        self, delivery_id: int, lease: str, outcome: Outcome, now: str, *,
        next_at: str | None = None, status: int | None = None,
        latency_ms: float | None = None, error: str | None = None,
        require_live: bool = False, subscription: str | None = None,
    ) -> Delivery | None:
        row = await self.conn.fetchrow(
            "SELECT attempts, next_at, subscription FROM deliveries WHERE id = $1"
            " AND state = 'leased' AND lease = $2 FOR UPDATE", delivery_id, lease)
        if row is None or (require_live and row[1] <= now) \
                or (subscription is not None and row[2] != subscription):
            return None
        state = NEXT_STATE[outcome]
        keep_lease = state is DeliveryState.LEASED
        unsent = outcome is Outcome.UNSENT
        updated = await self.conn.fetchrow(
            "UPDATE deliveries SET state = $1, lease = $2, next_at = $3, attempts = attempts - $8,"
            " last_status = coalesce($4, last_status), last_error = $5, updated_at = $6"
            f" WHERE id = $7 RETURNING {DELIVERY_COLUMNS}",
            state.value, lease if keep_lease else None,
            next_at if next_at is not None else now, status,
            error if outcome is not Outcome.RENEWED else None, now, delivery_id, int(unsent))
        if unsent:
            await self.conn.execute(
                "DELETE FROM delivery_attempts WHERE delivery_id = $1 AND n = $2"
                " AND outcome = 'leased'", delivery_id, row[0])
        elif outcome is not Outcome.RENEWED:
            await self._end_attempt(delivery_id, row[0], outcome, status, latency_ms, error)
        assert updated is not None  # locked above
        return row_to_delivery(updated)

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        if len({s.delivery_id for s in settlements}) < len(settlements):
            await super().settle_many(settlements)  # one after the other, in order
            return
        # One statement for the batch. Each delivery changes only under its current
        # lease, and its attempt row with it (the attempt number is the one of the row
        # updated), as `settle` does one by one.
        await self.conn.execute(
            "WITH s AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[],"
            " $4::text[], $5::text[], $6::integer[], $7::float8[], $8::text[], $9::text[])"
            " AS s (id, lease, outcome, state, next_at, status, latency_ms, error, now)),"
            " d AS (UPDATE deliveries SET state = s.state, lease = NULL, next_at = s.next_at,"
            " last_status = coalesce(s.status, deliveries.last_status), last_error = s.error,"
            " updated_at = s.now FROM s WHERE deliveries.id = s.id"
            " AND deliveries.state = 'leased' AND deliveries.lease = s.lease"
            " RETURNING deliveries.id, deliveries.attempts, s.outcome, s.status,"
            " s.latency_ms, s.error)"
            " UPDATE delivery_attempts a SET outcome = d.outcome, status = d.status,"
            " latency_ms = d.latency_ms, error = d.error FROM d"
            " WHERE a.delivery_id = d.id AND a.n = d.attempts AND a.outcome = 'leased'",
            [s.delivery_id for s in settlements], [s.lease for s in settlements],
            [OUTCOME_TEXT[s.outcome] for s in settlements],
            [NEXT_STATE_TEXT[s.outcome] for s in settlements],
            [s.next_at if s.next_at is not None else s.now for s in settlements],
            [s.status for s in settlements], [s.latency_ms for s in settlements],
            [s.error for s in settlements], [s.now for s in settlements])

    async def requeue(self, delivery_id: int, now: str) -> Delivery | None:
        row = await self.conn.fetchrow(
            "UPDATE deliveries SET state = 'pending', attempts_before = attempts, next_at = $1,"
            " first_at = $1, lease = NULL, updated_at = $1"
            f" WHERE id = $2 AND state = 'deadlettered' RETURNING {DELIVERY_COLUMNS}",
            now, delivery_id)
        return row_to_delivery(row) if row else None

    async def set_paused(self, subscription: str, paused: bool, by: str | None,
                         now: str) -> SubscriptionControl:
        await self.conn.execute(
            "INSERT INTO subscription_controls (name, paused, paused_by, updated_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,"
            " paused_by = excluded.paused_by, updated_at = excluded.updated_at",
            subscription, paused, by, now)
        return SubscriptionControl(subscription, paused, by, now)

    async def breaker(self, subscription: str) -> SubscriptionHealth | None:
        # The write transaction already holds the log's lock (every replica's writes
        # are serialised by it), so this read cannot be overtaken before the save.
        row = await self.conn.fetchrow(
            f"SELECT {HEALTH_COLUMNS} FROM subscription_health WHERE subscription = $1"
            " FOR UPDATE", subscription)
        return row_to_health(row) if row else None

    async def save_breaker(self, health: SubscriptionHealth) -> None:
        await self.conn.execute(
            f"INSERT INTO subscription_health ({HEALTH_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subscription) DO UPDATE SET"
            " state = excluded.state, consecutive_failures = excluded.consecutive_failures,"
            " reopen_at = excluded.reopen_at, last_error = excluded.last_error,"
            " updated_at = excluded.updated_at",
            health.subscription, health.state.value, health.consecutive_failures,
            health.reopen_at, health.last_error, health.updated_at)


class PgJobWrites(_PgWrites, JobWrites):
    """Action-job writes inside the transaction."""

    async def add(
        self, action: str, seq: int, now: str, *, params: dict[str, Any] | None = None,
        todo_id: int | None = None, operator: str | None = None,
    ) -> int:
        stamp = now
        job_id = await self.conn.fetchval(
            "INSERT INTO action_jobs (action, seq, state, next_at, params, todo_id, operator,"
            " created_at, updated_at) VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $7)"
            " RETURNING id",
            action, seq, now, orjson.dumps(params).decode() if params is not None else None,
            todo_id, operator, stamp)
        return int(job_id)

    async def claim(self, limit: int, now: str, lease_s: float,
                    actions: Sequence[str] | None = None) -> list[ClaimedJob]:
        if limit <= 0 or (actions is not None and not actions):
            return []
        stamp = now
        rows = await self.conn.fetch(
            "WITH due AS MATERIALIZED (SELECT id FROM action_jobs"
            " WHERE state IN ('pending', 'running') AND next_at <= $1"
            " AND ($2::text[] IS NULL OR action = ANY ($2)) ORDER BY next_at, id LIMIT $3"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE action_jobs j SET state = 'running', attempts = j.attempts + 1,"
            " lease = j.id || '.' || (j.attempts + 1) || '.' || $4, next_at = $5,"
            f" updated_at = $6 FROM due WHERE j.id = due.id RETURNING"
            f" {', '.join('j.' + c.strip() for c in JOB_COLUMNS.split(','))}",
            now, list(actions) if actions is not None else None, limit,
            new_lease(0, 0).rsplit(".", 1)[1], later(now, lease_s), stamp)
        jobs = sorted((row_to_job(r) for r in rows), key=lambda j: (j.next_at, j.id))
        events = await self._events([j.seq for j in jobs])
        return [ClaimedJob(j, events[j.seq]) for j in jobs]

    async def finish(
        self, job_id: int, lease: str, state: JobState, now: str, *,
        next_at: str | None = None, result_seq: int | None = None,
        error: str | None = None,
    ) -> ActionJob | None:
        row = await self.conn.fetchrow(
            "UPDATE action_jobs SET state = $1, lease = NULL, next_at = $2,"
            " result_seq = coalesce($3, result_seq), last_error = $4, updated_at = $5"
            f" WHERE id = $6 AND state = 'running' AND lease = $7 RETURNING {JOB_COLUMNS}",
            state.value, next_at if next_at is not None else now, result_seq, error,
            now, job_id, lease)
        return row_to_job(row) if row else None


class PgDeliveries(DeliveryRepository):
    """Deliveries, attempts and pauses; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgDeliveryWrites:
        return PgDeliveryWrites(transaction_of(tx).conn)

    async def get(self, delivery_id: int) -> Delivery | None:
        row = await self.pool.fetchrow(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1", delivery_id)
        return row_to_delivery(row) if row else None

    async def page(self, subscription: str, state: str | None = None, after: int = 0,
                   limit: int = 100) -> list[Delivery]:
        rows = await self.pool.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription = $1 AND id > $2"
            " AND ($3::text IS NULL OR state = $3) ORDER BY id LIMIT $4",
            subscription, after, state, limit)
        return [row_to_delivery(r) for r in rows]

    async def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        found: dict[int, list[Attempt]] = {i: [] for i in delivery_ids}
        if not delivery_ids:
            return found
        rows = await self.pool.fetch(
            "SELECT delivery_id, n, lease, started_at, outcome, status, latency_ms, error"
            " FROM delivery_attempts WHERE delivery_id = ANY ($1) ORDER BY delivery_id, n",
            list(found))
        for r in rows:
            found[r[0]].append(Attempt(r[0], r[1], r[2], r[3], Outcome(r[4]), r[5], r[6], r[7]))
        return found

    async def counts(self, subscription: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT state, count(*) FROM deliveries WHERE subscription = $1 GROUP BY state",
            subscription)
        counts = {s.value: 0 for s in DeliveryState}
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    async def last_error(self, subscription: str) -> Delivery | None:
        row = await self.pool.fetchrow(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription = $1"
            " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1", subscription)
        return row_to_delivery(row) if row else None

    async def next_due(self, subscription: str, ordered: bool = False) -> str | None:
        if ordered:
            value = await self.pool.fetchval(
                f"SELECT next_at FROM deliveries WHERE subscription = $1 AND {OPEN}"
                " ORDER BY seq LIMIT 1", subscription)
        else:
            value = await self.pool.fetchval(
                f"SELECT min(next_at) FROM deliveries WHERE subscription = $1 AND {OPEN}",
                subscription)
        return None if value is None else str(value)

    async def count_exhausted(self, subscription: str, max_attempts: int, now: str) -> int:
        return int(await self.pool.fetchval(
            f"SELECT count(*) FROM deliveries WHERE subscription = $1 AND {OPEN}"
            " AND next_at <= $2 AND attempts - attempts_before >= $3",
            subscription, now, max_attempts))

    async def controls(self) -> dict[str, SubscriptionControl]:
        rows = await self.pool.fetch(
            "SELECT name, paused, paused_by, updated_at FROM subscription_controls")
        return {r[0]: SubscriptionControl(r[0], bool(r[1]), r[2], r[3]) for r in rows}

    async def breakers(self) -> dict[str, SubscriptionHealth]:
        rows = await self.pool.fetch(f"SELECT {HEALTH_COLUMNS} FROM subscription_health")
        return {r[0]: row_to_health(r) for r in rows}


class PgJobs(JobRepository):
    """Action jobs; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgJobWrites:
        return PgJobWrites(transaction_of(tx).conn)

    async def get(self, job_id: int) -> ActionJob | None:
        row = await self.pool.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM action_jobs WHERE id = $1", job_id)
        return row_to_job(row) if row else None

    async def page(self, action: str, after: int = 0, limit: int = 100) -> list[ActionJob]:
        rows = await self.pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM action_jobs WHERE action = $1 AND id > $2"
            " ORDER BY id LIMIT $3", action, after, limit)
        return [row_to_job(r) for r in rows]

    async def next_due(self) -> str | None:
        value = await self.pool.fetchval(
            "SELECT min(next_at) FROM action_jobs WHERE state IN ('pending', 'running')")
        return None if value is None else str(value)
