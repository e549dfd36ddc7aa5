"""Todo item, history and silence statements on PostgreSQL. Items read for a decision are
locked (`FOR UPDATE`) until the transaction ends."""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Any

import orjson

from broker.store.gathered_todos import MISSING, GatheredTodos
from broker.store.postgres.transaction import PgTransaction, PoolSource, transaction_of
from broker.store.transaction import Transaction
from broker.todos.model import (
    QueueCounts,
    Silence,
    TodoEventRef,
    TodoHistoryEntry,
    TodoItem,
    TodoState,
)
from broker.todos.repository import (
    SilenceRepository,
    SilenceWrites,
    TodoRepository,
    TodoWrites,
)

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

TODO_COLUMNS = (
    "id, queue, key, title, state, priority, owner, lease_expires, snoozed_until, count,"
    " first_seen, last_seen, created_at, updated_at, resolved_at, resolution, event_seq,"
    " first_event_seq"
)
SILENCE_COLUMNS = "id, matcher, queue, comment, author, created_at, ends_at, expired_by"

# Not snoozed at $1 (a snooze that ran out no longer hides the item).
_AWAKE = "(snoozed_until IS NULL OR snoozed_until <= $1)"
_VIEWS = {
    "open": f"state = 'open' AND {_AWAKE}",
    "claimed": f"state = 'claimed' AND {_AWAKE}",
    "active": f"state IN ('open', 'claimed') AND {_AWAKE}",
    "snoozed": "state <> 'resolved' AND snoozed_until > $1",
    "resolved": "state = 'resolved'",
}
_STATES_OF = {"open": ("open",), "claimed": ("claimed",), "resolved": ("resolved",),
              "active": ("open", "claimed")}
"""The states a view's items are in (the snoozed view is any unresolved state)."""


def row_to_todo(row: asyncpg.Record) -> TodoItem:
    return TodoItem(
        row[0], row[1], row[2], row[3], TodoState(row[4]), row[5], row[6], row[7], row[8],
        row[9], row[10], row[11], row[12], row[13], row[14],
        orjson.loads(row[15]) if row[15] else None, row[16], row[17],
    )


def row_to_silence(row: asyncpg.Record) -> Silence:
    return Silence(row[0], orjson.loads(row[1]), row[2], row[3], row[4], row[5], row[6],
                   row[7])


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


_SAVE = ("UPDATE todos SET title = $1, state = $2, priority = $3, owner = $4,"
         " lease_expires = $5, snoozed_until = $6, count = $7, last_seen = $8,"
         " updated_at = $9, resolved_at = $10, resolution = $11, event_seq = $12"
         " WHERE id = $13")


def _save_args(item: TodoItem) -> tuple[Any, ...]:
    return (item.title, item.state.value, item.priority, item.owner, item.lease_expires,
            item.snoozed_until, item.count, item.last_seen, item.updated_at,
            item.resolved_at, _json(item.resolution), item.event_seq, item.id)


class _GatheredTodoWrites(GatheredTodos):
    """The todo writes of one transaction that wait for its end (a `Deferred`): history
    and item-event rows (one `executemany` each), and saves that leave an item's state
    as it was (an attached event: count, last seen, title) — one UPDATE per item however
    many events attached, instead of a lock, an UPDATE and an INSERT per event, each a
    round trip made while the transaction holds the log's lock. It remembers the items
    locked in the transaction (they stay locked until it ends, so what it remembers
    cannot change under it), so the next event of a group finds its item without a
    statement. That a key has no active item is not remembered: nothing locks it.

    A save that changes an item's state is written at once: the one-active-item-per-key
    index and the queue counts follow state changes in statement order. Statements
    that select items by other columns (`expired_claims`, `ended_snoozes`) first write
    the gathered saves."""

    def __init__(self, conn: Conn) -> None:
        super().__init__()
        self.conn = conn
        self.active: dict[tuple[str, str], int] = {}
        """(queue, key) -> the id of its open or claimed item, locked (its items too)."""
        self.writes: PgTodoWrites | None = None
        """The write half on this transaction (one per transaction, not per event)."""

    def remember(self, item: TodoItem) -> None:
        where = (item.queue, item.key)
        if item.state is TodoState.RESOLVED:
            if self.active.get(where) == item.id:
                self.put(self.active, where, MISSING)
            self.put(self.items, item.id, MISSING)
            return
        if self.active.get(where) != item.id:  # most saves keep it
            self.put(self.active, where, item.id)
        self.put(self.items, item.id, item)

    async def write_saves(self) -> None:
        if self.saves:
            await self.conn.executemany(_SAVE, [_save_args(i) for i in self.saves.values()])
            self.forget_saves()

    async def flush(self) -> None:
        await self.write_saves()
        if self.events:
            await self.conn.executemany(
                "INSERT INTO todo_events (todo_id, seq) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING", self.events)
            self.events.clear()
        if self.history:
            await self.conn.executemany(
                "INSERT INTO todo_history (todo_id, at, action, operator, note, event_seq,"
                " audit_seq, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", self.history)
            self.history.clear()


class PgTodoWrites(TodoWrites):
    """Todo writes inside the transaction; items read for a decision are locked."""

    gathers = True

    def __init__(self, gathered: _GatheredTodoWrites, tx: PgTransaction) -> None:
        self.conn = gathered.conn
        self._tx = gathered
        self._pg = tx

    async def _one(self, sql: str, *args: Any) -> TodoItem | None:
        row = await self.conn.fetchrow(sql, *args)
        return row_to_todo(row) if row else None

    async def _locked(self, sql: str, *args: Any) -> TodoItem | None:
        # In its own savepoint: a failed statement aborts a PostgreSQL transaction, and
        # a caller relying on `gathers` takes none around an event it attaches.
        async with self._pg.savepoint():
            item = await self._one(sql, *args)
        if item is not None:
            self._tx.remember(item)
        return item

    async def find_active(self, queue: str, key: str) -> TodoItem | None:
        known = self._tx.active.get((queue, key))
        if known is not None:
            return self._tx.items[known]
        return await self._locked(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE queue = $1 AND key = $2"
            " AND state <> 'resolved' FOR UPDATE", queue, key)

    async def lock(self, todo_id: int) -> TodoItem | None:
        known = self._tx.items.get(todo_id)
        if known is not None:
            return known
        return await self._locked(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE id = $1 FOR UPDATE", todo_id)

    async def insert(
        self, *, queue: str, key: str, title: str, priority: str | None, seq: int, at: str
    ) -> TodoItem:
        item = await self._one(
            "WITH item AS (INSERT INTO todos (queue, key, title, state, priority, count,"
            " first_seen, last_seen, created_at, updated_at, event_seq, first_event_seq)"
            " VALUES ($1, $2, $3, 'open', $4, 1, $5, $5, $5, $5, $6, $6)"
            f" RETURNING {TODO_COLUMNS}),"
            " attached AS (INSERT INTO todo_events (todo_id, seq) SELECT id, $6 FROM item)"
            " SELECT * FROM item", queue, key, title, priority, at, seq)
        assert item is not None
        self._tx.remember(item)
        return item

    async def save(self, item: TodoItem) -> None:
        before = self._tx.items.get(item.id)
        if before is not None and before.state is item.state:
            self._tx.put(self._tx.saves, item.id, item)  # written once, at the end
        else:
            if item.id in self._tx.saves:
                self._tx.put(self._tx.saves, item.id, MISSING)
            await self.conn.execute(_SAVE, *_save_args(item))
        self._tx.remember(item)

    async def add_event(self, todo_id: int, seq: int) -> None:
        self._tx.events.append((todo_id, seq))

    async def attach(self, item: TodoItem, seq: int) -> None:
        # The item was read or written in this transaction (`find_active` remembered
        # it): both writes gathered in one step, as `add_event` and `save` would.
        if not self._tx.attached(item, seq):
            await super().attach(item, seq)

    def held_active(self, queue: str, key: str) -> TodoItem | None:
        known = self._tx.active.get((queue, key))
        return None if known is None else self._tx.items[known]

    def attached(self, item: TodoItem, seq: int) -> bool:
        return self._tx.attached(item, seq)

    async def add_history(self, todo_id: int, entry: TodoHistoryEntry) -> None:
        self._tx.history.append(
            (todo_id, entry.at, entry.action, entry.operator, entry.note, entry.event_seq,
             entry.audit_seq, _json(entry.detail)))

    async def expired_claims(self, now: str) -> list[TodoItem]:
        await self._tx.write_saves()
        rows = await self.conn.fetch(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE state = 'claimed'"
            " AND lease_expires <= $1 ORDER BY lease_expires, id FOR UPDATE", now)
        return self._remembered([row_to_todo(r) for r in rows])

    async def ended_snoozes(self, now: str) -> list[TodoItem]:
        await self._tx.write_saves()
        rows = await self.conn.fetch(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE snoozed_until <= $1"
            " AND state <> 'resolved' ORDER BY snoozed_until, id FOR UPDATE", now)
        return self._remembered([row_to_todo(r) for r in rows])

    def _remembered(self, items: list[TodoItem]) -> list[TodoItem]:
        for item in items:
            self._tx.remember(item)
        return items


class PgTodos(TodoRepository):
    """Todo items; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source
        self._last: tuple[Transaction, PgTodoWrites] | None = None
        """The latest transaction's writes: asked for once per event a queue takes."""

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgTodoWrites:
        last = self._last
        if last is not None and last[0] is tx:
            return last[1]
        pg = transaction_of(tx)
        gathered = pg.deferred("todos", _GatheredTodoWrites)
        if gathered.writes is None:
            gathered.writes = PgTodoWrites(gathered, pg)
        self._last = (tx, gathered.writes)
        return gathered.writes

    async def get(self, todo_id: int) -> TodoItem | None:
        row = await self.pool.fetchrow(f"SELECT {TODO_COLUMNS} FROM todos WHERE id = $1",
                                       todo_id)
        return row_to_todo(row) if row else None

    async def events(self, todo_id: int, limit: int = 1000) -> list[TodoEventRef]:
        rows = await self.pool.fetch(
            "SELECT e.seq, e.type, e.source, e.subject, e.time FROM"
            " (SELECT seq FROM todo_events WHERE todo_id = $1 ORDER BY seq DESC LIMIT $2) t"
            " JOIN events e ON e.seq = t.seq ORDER BY e.seq", todo_id, limit)
        return [TodoEventRef(*r) for r in rows]

    async def event_seqs(self, todo_id: int) -> list[int]:
        rows = await self.pool.fetch(
            "SELECT seq FROM todo_events WHERE todo_id = $1 ORDER BY seq", todo_id)
        return [int(r[0]) for r in rows]

    async def history(self, todo_id: int) -> list[TodoHistoryEntry]:
        rows = await self.pool.fetch(
            "SELECT at, action, operator, note, event_seq, audit_seq, detail"
            " FROM todo_history WHERE todo_id = $1 ORDER BY id", todo_id)
        return [TodoHistoryEntry(r[0], r[1], r[2], r[3], r[4], r[5],
                                 orjson.loads(r[6]) if r[6] else {}) for r in rows]

    async def page(
        self, *, now: str, queue: str | None = None, view: str | None = None,
        owner: str | None = None, limit: int = 100, after: tuple[str, int] | None = None,
    ) -> list[TodoItem]:
        if queue is None or view == "snoozed":
            return await self._select(now, queue, view and _VIEWS[view], owner, limit, after)
        # One queue: each state is a range of todos_listing already in activity order;
        # a view over several states merges their first pages instead of sorting all.
        awake = f" AND {_AWAKE}" if view in ("open", "claimed", "active") else ""
        states = _STATES_OF[view] if view is not None else ("open", "claimed", "resolved")
        pages = [await self._select(now, queue, f"state = '{state}'{awake}", owner, limit,
                                    after) for state in states]
        if len(pages) == 1:
            return pages[0]
        merged = heapq.merge(*pages, key=lambda i: (i.updated_at, i.id), reverse=True)
        return list(itertools.islice(merged, limit))

    async def _select(self, now: str, queue: str | None, where: str | None,
                      owner: str | None, limit: int, after: tuple[str, int] | None
                      ) -> list[TodoItem]:
        clauses = ["$1::text IS NOT NULL"]
        params: list[Any] = [now]

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if queue is not None:
            clauses.append(f"queue = {bind(queue)}")
        if where is not None:
            clauses.append(where)
        if owner is not None:
            clauses.append(f"owner = {bind(owner)}")
        if after is not None:
            at, item_id = bind(after[0]), bind(after[1])
            clauses.append(f"(updated_at, id) < ({at}, {item_id})")
        rows = await self.pool.fetch(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE {' AND '.join(clauses)}"
            f" ORDER BY updated_at DESC, id DESC LIMIT {bind(limit)}", *params)
        return [row_to_todo(r) for r in rows]

    async def queue_counts(self, now: str) -> list[QueueCounts]:
        # Kept counts plus the deltas not yet folded, minus the few items snoozed at
        # `now`; the oldest open item per queue from the partial index. One snapshot.
        rows = await self.pool.fetch(
            "WITH kept AS (SELECT queue, state, sum(n) AS n FROM (SELECT queue, state, n"
            "   FROM queue_counts UNION ALL SELECT queue, state, n FROM queue_counts_delta) c"
            "   GROUP BY queue, state),"
            " asleep AS (SELECT queue, state, count(*) AS n FROM todos"
            "   WHERE snoozed_until > $1 AND state <> 'resolved' GROUP BY queue, state),"
            " per_queue AS (SELECT k.queue,"
            "   sum(k.n) FILTER (WHERE k.state = 'open') AS open,"
            "   sum(k.n) FILTER (WHERE k.state = 'claimed') AS claimed,"
            "   sum(k.n) FILTER (WHERE k.state = 'resolved') AS resolved,"
            "   sum(k.n) AS total FROM kept k GROUP BY k.queue)"
            " SELECT p.queue,"
            "   coalesce(p.open, 0) - coalesce((SELECT n FROM asleep a WHERE a.queue = p.queue"
            "     AND a.state = 'open'), 0),"
            "   coalesce(p.claimed, 0) - coalesce((SELECT n FROM asleep a"
            "     WHERE a.queue = p.queue AND a.state = 'claimed'), 0),"
            "   coalesce((SELECT sum(n) FROM asleep a WHERE a.queue = p.queue), 0),"
            "   coalesce(p.resolved, 0),"
            "   (SELECT first_seen FROM todos t WHERE t.queue = p.queue AND t.state = 'open'"
            "     AND (t.snoozed_until IS NULL OR t.snoozed_until <= $1)"
            "     ORDER BY first_seen LIMIT 1)"
            " FROM per_queue p WHERE p.total > 0 ORDER BY p.queue", now)
        return [QueueCounts(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5])
                for r in rows]

    async def due(self, now: str) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM todos WHERE state = 'claimed'"
            " AND lease_expires <= $1) OR EXISTS (SELECT 1 FROM todos"
            " WHERE snoozed_until <= $1 AND state <> 'resolved')", now))


class PgSilenceWrites(SilenceWrites):
    """Silence writes inside the transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def insert(
        self, *, matcher: dict[str, Any], queue: str | None, comment: str, author: str,
        created_at: str, ends_at: str,
    ) -> Silence:
        row = await self.conn.fetchrow(
            "INSERT INTO silences (matcher, queue, comment, author, created_at, ends_at)"
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SILENCE_COLUMNS}",
            orjson.dumps(matcher).decode(), queue, comment, author, created_at, ends_at)
        assert row is not None
        return row_to_silence(row)

    async def expire(self, silence_id: int, at: str, by: str) -> Silence | None:
        await self.conn.execute(
            "UPDATE silences SET ends_at = $1, expired_by = $2 WHERE id = $3 AND ends_at > $1",
            at, by, silence_id)
        row = await self.conn.fetchrow(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1", silence_id)
        return row_to_silence(row) if row else None

    async def active(self, now: str) -> list[Silence]:
        rows = await self.conn.fetch(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > $1 ORDER BY id", now)
        return [row_to_silence(r) for r in rows]


class PgSilences(SilenceRepository):
    """Silences; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgSilenceWrites:
        return PgSilenceWrites(transaction_of(tx).conn)

    async def recent(self, now: str, *, include_expired: bool = False
                            ) -> list[Silence]:
        rows = await self.pool.fetch(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE $2 OR ends_at > $1"
            " ORDER BY id DESC", now, include_expired)
        return [row_to_silence(r) for r in rows]

    async def get(self, silence_id: int) -> Silence | None:
        row = await self.pool.fetchrow(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1", silence_id)
        return row_to_silence(row) if row else None
