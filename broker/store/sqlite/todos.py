"""SQLite statements for todo items, their events and history, and silences."""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from broker.store.gathered_todos import MISSING, GatheredTodos
from broker.store.sqlite.connections import ReaderPool, beside_held
from broker.store.sqlite.events import pieces, rows_sql
from broker.store.sqlite.transaction import connection_of, sqlite_transaction
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

TODO_COLUMNS = (
    "id, queue, key, title, state, priority, owner, lease_expires, snoozed_until, count,"
    " first_seen, last_seen, created_at, updated_at, resolved_at, resolution, event_seq,"
    " first_event_seq"
)
SILENCE_COLUMNS = "id, matcher, queue, comment, author, created_at, ends_at, expired_by"

# Not snoozed at :now (a snooze that ran out no longer hides the item).
_AWAKE = "(snoozed_until IS NULL OR snoozed_until <= :now)"
_VIEWS = {
    "open": f"state = 'open' AND {_AWAKE}",
    "claimed": f"state = 'claimed' AND {_AWAKE}",
    "active": f"state IN ('open', 'claimed') AND {_AWAKE}",
    "snoozed": "state <> 'resolved' AND snoozed_until > :now",
    "resolved": "state = 'resolved'",
}
_STATES_OF = {"open": ("open",), "claimed": ("claimed",), "resolved": ("resolved",),
              "active": ("open", "claimed")}
"""The states a view's items are in (the snoozed view is any unresolved state)."""


def row_to_todo(row: Sequence[Any]) -> TodoItem:
    return TodoItem(
        row[0], row[1], row[2], row[3], TodoState(row[4]), row[5], row[6], row[7], row[8],
        row[9], row[10], row[11], row[12], row[13], row[14],
        orjson.loads(row[15]) if row[15] else None, row[16], row[17],
    )


def row_to_silence(row: Sequence[Any]) -> Silence:
    return Silence(row[0], orjson.loads(row[1]), row[2], row[3], row[4], row[5], row[6],
                   row[7])


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


QUEUE_COUNTS = (
    "SELECT 'k', queue, state, n, NULL FROM queue_counts WHERE n > 0"
    " UNION ALL SELECT 'a', queue, state, count(*), NULL FROM todos INDEXED BY todos_snoozes"
    " WHERE snoozed_until > ?1 AND state <> 'resolved' GROUP BY queue, state"
    " UNION ALL SELECT 'o', q.queue, NULL, NULL, (SELECT first_seen FROM todos"
    " INDEXED BY todos_oldest_open WHERE queue = q.queue AND state = 'open'"
    " AND (snoozed_until IS NULL OR snoozed_until <= ?2) ORDER BY first_seen LIMIT 1)"
    " FROM queue_counts q WHERE q.state = 'open' AND q.n > 0"
)
"""Kept counts by queue and state ('k'), items snoozed now by queue and state ('a'),
and the oldest open item not snoozed of each queue with open items ('o')."""


class _GatheredTodoWrites(GatheredTodos):
    """The todo writes of one transaction that wait for its end (a `Deferred`): history
    and item-event rows (one `executemany` each), and saves that leave an item's state
    as it was (an attached event: count, last seen, title) — one UPDATE per item however
    many events attached. It also remembers the items read or written in the
    transaction, so the next event of a group finds its item without a SELECT.

    A save that changes an item's state is written at once: the one-active-item-per-key
    index and the queue counts follow state changes in statement order. Statements
    that select items by other columns (`expired_claims`, `ended_snoozes`) first write
    the gathered saves."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.active: dict[tuple[str, str], int | None] = {}
        """(queue, key) -> the id of its open or claimed item; None: there is none."""
        self.writes: SqliteTodoWrites | None = None
        """The write half on this transaction (one per transaction, not per event)."""

    def remember(self, item: TodoItem) -> None:
        where = (item.queue, item.key)
        active = None if item.state is TodoState.RESOLVED else item.id
        if self.active.get(where, MISSING) != active:  # most saves keep it
            self.put(self.active, where, active)
        self.put(self.items, item.id, MISSING if item.state is TodoState.RESOLVED else item)

    def write_saves(self) -> None:
        if self.saves:
            _run_rows(self.conn, _SAVES, [_save_params(i) for i in self.saves.values()])
            self.forget_saves()

    def flush(self) -> None:
        self.write_saves()
        if self.events:
            _run_rows(self.conn, _EVENT_ROWS, self.events)
            self.events.clear()
        if self.history:
            _run_rows(self.conn, _HISTORY_ROWS, self.history)
            self.history.clear()


# The gathered rows are written many to a statement, not with `executemany`, which
# steps a statement per row: a todo queue taking every event of a batch writes an item
# event row per event, and each statement costs its cursor set-up again (~4,000
# instructions a row). Rows go in statements of `events.CHUNK` rows and then of the
# powers of two the rest is made of (`events.pieces`): few statement texts for the
# connection's cache.
_EVENT_ROWS = ("INSERT OR IGNORE INTO todo_events (todo_id, seq) VALUES {rows}", "(?, ?)")
_HISTORY_ROWS = (
    "INSERT INTO todo_history (todo_id, at, action, operator, note, event_seq, audit_seq,"
    " detail) VALUES {rows}", "(?, ?, ?, ?, ?, ?, ?, ?)")
"""A multi-row insert keeps the order of its rows: history ids ascend as before."""
_SAVES = (
    "WITH saved (title, state, priority, owner, lease_expires, snoozed_until, count,"
    " last_seen, updated_at, resolved_at, resolution, event_seq, id) AS (VALUES {rows})"
    " UPDATE todos SET title = saved.title, state = saved.state,"
    " priority = saved.priority, owner = saved.owner,"
    " lease_expires = saved.lease_expires, snoozed_until = saved.snoozed_until,"
    " count = saved.count, last_seen = saved.last_seen, updated_at = saved.updated_at,"
    " resolved_at = saved.resolved_at, resolution = saved.resolution,"
    " event_seq = saved.event_seq FROM saved WHERE todos.id = saved.id",
    "(" + ", ".join(["?"] * 13) + ")")
"""`_SAVE` for many items (their `_save_params`) in one statement."""


def _run_rows(conn: sqlite3.Connection, statement: tuple[str, str],
              rows: Sequence[tuple[Any, ...]]) -> None:
    """Run `statement` (text, one row's values) for `rows`, in order, many to a run."""
    at = 0
    for count in pieces(len(rows)):
        conn.execute(rows_sql(statement, count),
                     list(itertools.chain.from_iterable(rows[at:at + count])))
        at += count


_SAVE = ("UPDATE todos SET title = ?, state = ?, priority = ?, owner = ?,"
         " lease_expires = ?, snoozed_until = ?, count = ?, last_seen = ?,"
         " updated_at = ?, resolved_at = ?, resolution = ?, event_seq = ? WHERE id = ?")


def _save_params(item: TodoItem) -> tuple[Any, ...]:
    return (item.title, item.state.value, item.priority, item.owner, item.lease_expires,
            item.snoozed_until, item.count, item.last_seen, item.updated_at,
            item.resolved_at, _json(item.resolution), item.event_seq, item.id)


class SqliteTodoWrites(TodoWrites):
    """Todo writes on the writer connection. SQLite has one writer, so a row read inside
    the transaction is already locked."""

    gathers = True

    def __init__(self, gathered: _GatheredTodoWrites) -> None:
        self.conn = gathered.conn
        self._tx = gathered

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> TodoItem | None:
        # Items are no table the held event inserts write: they stay held back, so a
        # routed batch is still inserted in its few statements, with its routes.
        row = beside_held(self.conn, sql, params).fetchone()
        return row_to_todo(row) if row else None

    async def find_active(self, queue: str, key: str) -> TodoItem | None:
        known = self._tx.active.get((queue, key), MISSING)
        if known is not MISSING:
            return None if known is None else self._tx.items[known]  # type: ignore[index]
        item = self._one(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE queue = ? AND key = ?"
            " AND state <> 'resolved'", (queue, key))
        if item is None:
            self._tx.put(self._tx.active, (queue, key), None)
        else:
            self._tx.remember(item)
        return item

    async def lock(self, todo_id: int) -> TodoItem | None:
        known = self._tx.items.get(todo_id)
        if known is not None:
            return known
        item = self._one(f"SELECT {TODO_COLUMNS} FROM todos WHERE id = ?", (todo_id,))
        if item is not None:
            self._tx.remember(item)
        return item

    async def insert(self, *, queue: str, key: str, title: str, priority: str | None,
                     seq: int, at: str) -> TodoItem:
        item = self._one(
            "INSERT INTO todos (queue, key, title, state, priority, count, first_seen,"
            " last_seen, created_at, updated_at, event_seq, first_event_seq)"
            " VALUES (?, ?, ?, 'open', ?, 1, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {TODO_COLUMNS}",
            (queue, key, title, priority, at, at, at, at, seq, seq))
        assert item is not None
        self._tx.remember(item)
        await self.add_event(item.id, seq)
        return item

    async def save(self, item: TodoItem) -> None:
        before = self._tx.items.get(item.id)
        if before is not None and before.state is item.state:
            self._tx.put(self._tx.saves, item.id, item)  # written once, at the end
            # Same queue, key and state: which item is active for its key is unchanged.
            self._tx.put(self._tx.items, item.id, item)
            return
        self._tx.put(self._tx.saves, item.id, MISSING)
        beside_held(self.conn, _SAVE, _save_params(item))
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
        self._tx.write_saves()
        rows = self.conn.execute(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE state = 'claimed'"
            " AND lease_expires <= ? ORDER BY lease_expires, id", (now,)).fetchall()
        return self._remembered([row_to_todo(r) for r in rows])

    async def ended_snoozes(self, now: str) -> list[TodoItem]:
        self._tx.write_saves()
        rows = self.conn.execute(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE snoozed_until <= ?"
            " AND state <> 'resolved' ORDER BY snoozed_until, id", (now,)).fetchall()
        return self._remembered([row_to_todo(r) for r in rows])

    def _remembered(self, items: list[TodoItem]) -> list[TodoItem]:
        for item in items:
            self._tx.remember(item)
        return items


class SqliteTodos(TodoRepository):
    """Todo items in `todos`, `todo_events` and `todo_history`; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers
        self._last: tuple[Transaction, SqliteTodoWrites] | None = None
        """The latest transaction's writes: asked for once per event a queue takes."""

    def writes(self, tx: Transaction) -> SqliteTodoWrites:
        last = self._last
        if last is not None and last[0] is tx:
            return last[1]
        gathered = sqlite_transaction(tx).deferred("todos", _GatheredTodoWrites)
        if gathered.writes is None:
            gathered.writes = SqliteTodoWrites(gathered)
        self._last = (tx, gathered.writes)
        return gathered.writes

    async def get(self, todo_id: int) -> TodoItem | None:
        row = await self._readers.fetchone(
            f"SELECT {TODO_COLUMNS} FROM todos WHERE id = ?", (todo_id,))
        return row_to_todo(row) if row else None

    async def events(self, todo_id: int, limit: int = 1000) -> list[TodoEventRef]:
        rows = await self._readers.fetchall(
            "SELECT e.seq, e.type, e.source, e.subject, e.time FROM todo_events t"
            " JOIN events e ON e.seq = t.seq WHERE t.todo_id = ? ORDER BY t.seq DESC LIMIT ?",
            (todo_id, limit))
        return [TodoEventRef(*r) for r in reversed(rows)]

    async def event_seqs(self, todo_id: int) -> list[int]:
        rows = await self._readers.fetchall(
            "SELECT seq FROM todo_events WHERE todo_id = ? ORDER BY seq", (todo_id,))
        return [int(r[0]) for r in rows]

    async def history(self, todo_id: int) -> list[TodoHistoryEntry]:
        rows = await self._readers.fetchall(
            "SELECT at, action, operator, note, event_seq, audit_seq, detail"
            " FROM todo_history WHERE todo_id = ? ORDER BY id", (todo_id,))
        return [TodoHistoryEntry(r[0], r[1], r[2], r[3], r[4], r[5],
                                 orjson.loads(r[6]) if r[6] else {}) for r in rows]

    async def page(
        self, *, now: str, queue: str | None = None, view: str | None = None,
        owner: str | None = None, limit: int = 100, after: tuple[str, int] | None = None,
    ) -> list[TodoItem]:
        params: dict[str, Any] = {"now": now, "limit": limit}
        clauses = []
        if owner is not None:
            clauses.append("owner = :owner")
            params["owner"] = owner
        if after is not None:
            clauses.append("(updated_at < :at OR (updated_at = :at AND id < :id))")
            params.update(at=after[0], id=after[1])
        if view == "snoozed":  # few items: the partial snooze index, then sorted
            clauses += [_VIEWS[view]] + (["queue = :queue"] if queue is not None else [])
            params["queue"] = queue
            return await self._select("todos INDEXED BY todos_snoozes", clauses, params)
        if queue is None:  # every queue: by activity, the view filtered on the way
            return await self._select(
                "todos", clauses + ([_VIEWS[view]] if view else []), params)
        # One queue: each state is a range of todos_listing already in activity order;
        # a view over several states merges their first pages instead of sorting all.
        params["queue"] = queue
        pages = []
        states = _STATES_OF[view] if view is not None else ("open", "claimed", "resolved")
        for state in states:
            pages.append(await self._select("todos", [
                "queue = :queue", f"state = '{state}'",
                *([_AWAKE] if view in ("open", "claimed", "active") else []), *clauses,
            ], params))
        if len(pages) == 1:
            return pages[0]
        merged = heapq.merge(*pages, key=lambda i: (i.updated_at, i.id), reverse=True)
        return list(itertools.islice(merged, limit))

    async def _select(self, table: str, clauses: list[str], params: dict[str, Any]
                      ) -> list[TodoItem]:
        rows = await self._readers.fetchall(
            f"SELECT {TODO_COLUMNS} FROM {table} WHERE {' AND '.join(clauses) or '1'}"
            " ORDER BY updated_at DESC, id DESC LIMIT :limit", params)  # type: ignore[arg-type]
        return [row_to_todo(r) for r in rows]

    async def queue_counts(self, now: str) -> list[QueueCounts]:
        # Kept counts per state (queue_counts), minus the few items snoozed at `now`
        # (the partial snooze index), and the oldest open item of each queue from its
        # partial index: no statement here visits every item. One statement, so one
        # snapshot and one trip to the reader thread however many queues there are.
        rows = await self._readers.fetchall(QUEUE_COUNTS, (now, now))
        by_queue: dict[str, dict[str, int]] = {}
        asleep: dict[tuple[str, str], int] = {}
        oldest_of: dict[str, str | None] = {}
        for part, queue, state, n, oldest in rows:
            if part == "k":
                by_queue.setdefault(queue, {})[state] = int(n)
            elif part == "a":
                asleep[(queue, state)] = int(n)
            else:
                oldest_of[queue] = oldest
        out = []
        for queue in sorted(by_queue):
            states = by_queue[queue]
            open_ = states.get("open", 0) - asleep.get((queue, "open"), 0)
            out.append(QueueCounts(
                queue, open_, states.get("claimed", 0) - asleep.get((queue, "claimed"), 0),
                sum(n for (q, _), n in asleep.items() if q == queue),
                states.get("resolved", 0), oldest_of.get(queue) if open_ > 0 else None))
        return out

    async def due(self, now: str) -> bool:
        row = await self._readers.fetchone(
            "SELECT EXISTS (SELECT 1 FROM todos WHERE state = 'claimed'"
            " AND lease_expires <= :now) OR EXISTS (SELECT 1 FROM todos"
            " WHERE snoozed_until <= :now AND state <> 'resolved')",
            {"now": now})  # type: ignore[arg-type]
        return bool(row and row[0])


class SqliteSilenceWrites(SilenceWrites):
    """Silence writes on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def insert(self, *, matcher: dict[str, Any], queue: str | None, comment: str,
                     author: str, created_at: str, ends_at: str) -> Silence:
        row = self.conn.execute(
            "INSERT INTO silences (matcher, queue, comment, author, created_at, ends_at)"
            f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {SILENCE_COLUMNS}",
            (orjson.dumps(matcher).decode(), queue, comment, author, created_at, ends_at),
        ).fetchone()
        return row_to_silence(row)

    async def expire(self, silence_id: int, at: str, by: str) -> Silence | None:
        self.conn.execute(
            "UPDATE silences SET ends_at = ?, expired_by = ? WHERE id = ? AND ends_at > ?",
            (at, by, silence_id, at))
        row = self.conn.execute(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?", (silence_id,)).fetchone()
        return row_to_silence(row) if row else None

    async def active(self, now: str) -> list[Silence]:
        rows = self.conn.execute(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > ? ORDER BY id",
            (now,)).fetchall()
        return [row_to_silence(r) for r in rows]


class SqliteSilences(SilenceRepository):
    """Silences in `silences`; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteSilenceWrites:
        return SqliteSilenceWrites(connection_of(tx))

    async def recent(self, now: str, *, include_expired: bool = False) -> list[Silence]:
        where = "1" if include_expired else "ends_at > ?"
        rows = await self._readers.fetchall(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE {where} ORDER BY id DESC",
            () if include_expired else (now,))
        return [row_to_silence(r) for r in rows]

    async def get(self, silence_id: int) -> Silence | None:
        row = await self._readers.fetchone(
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?", (silence_id,))
        return row_to_silence(row) if row else None
