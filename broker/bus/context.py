"""The write context: the one way into the store. A unit of work run by the bus gets one
inside the writer's transaction, and it offers exactly three things: publish an event
(with its cause), hand a stored event to a target, run something after commit.
Features write their own records through their repository (`repo.writes(ctx.transaction)`)
in the same transaction; routing, target hits and lineage stay behind this API."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from itertools import repeat
from types import TracebackType
from typing import Any, Protocol, TypeVar

from broker.bus.lineage import (
    LOOP_SOURCE,
    LOOP_TYPE,
    DescendantBudget,
    loop_notice,
    with_lineage,
)
from broker.bus.log import (
    AppendResult,
    EventItem,
    EventLog,
    RoutedRow,
    StoredEvent,
    TargetRecord,
    canonical,
    item_bytes,
    item_event,
    result_duplicate,
    result_seq,
)
from broker.bus.sizing import elided, too_large
from broker.errors import OpsbusError
from broker.events import new_event
from broker.store.transaction import Transaction

log = logging.getLogger(__name__)


RootBatch = tuple[list[dict[str, Any]], bool, list[bytes] | None]
"""A publisher's batch for the writer: (events, elide, their canonical bytes if made)."""


class Regroup(Exception):
    """The writer's fast path cannot answer this group: roll back, run unit by unit."""


@dataclass(slots=True)
class Routed:
    """What routing did with one event: the routes it matched and the target hits. Not
    frozen: one is made per event routed (see `Publication`)."""

    routes: tuple[str, ...]
    hits: list[TargetRecord]


class Routing(Protocol):
    """What the write path asks of routing (`broker.routing.Router` provides it)."""

    async def route(self, ctx: WriteContext, stored: StoredEvent) -> Routed:
        """Evaluate the routes for a just-appended event and act on every target hit."""
        ...

    async def hand_over(self, ctx: WriteContext, stored: StoredEvent, target: str,
                        via: str) -> TargetRecord:
        """Act on one `kind:name` target for `stored`, as if route `via` had hit it."""
        ...

    def passes(self, event: dict[str, Any]) -> bool:
        """True when `route` would do nothing with this event (no route to match, no
        hop count to check): the writer does not call it then."""
        ...


class Gathered(Protocol):
    """Work a feature gathers over a transaction's units and finishes once before its
    COMMIT (e.g. one announcement for many changes of one record). A unit or step that
    fails undoes what was gathered inside it, as its savepoint undoes its writes."""

    def mark(self) -> Any:
        """A point to undo to."""
        ...

    def undo(self, mark: Any) -> None:
        """Forget what was gathered since `mark` (None: since the start)."""
        ...

    # Optional: `settle()`, called when no step is open any more (nothing can be undone
    # to a mark taken before): what was kept to undo may go.

    async def finish(self, ctx: WriteContext) -> bool:
        """Publish and write what was gathered (it may gather more: called again until
        it returns False)."""
        ...


G = TypeVar("G", bound=Gathered)
Mark = tuple[int, int, int, int, int, list[Any] | None]
"""What `WriteContext._mark` records to undo a step to."""
FINISH_PASSES = 16
"""Finishing may route events that gather again; the hop limit bounds that chain, this
bounds the passes whatever happens."""


@dataclass(slots=True)
class Publication:
    """What publishing one event did. Not frozen: one is made per event published, and
    a frozen dataclass's __init__ sets each field through object.__setattr__ (about
    three times the cost of the whole object otherwise)."""

    seq: int
    """The stored seq (the original one for a duplicate; 0 when dropped)."""
    duplicate: bool = False
    conflict: bool = False
    """A duplicate whose content differs from the stored event's."""
    dropped: bool = False
    """Not stored: its root event had used its descendant budget."""
    stored: StoredEvent | None = None
    """The stored event, when this call stored it."""


class WriteContext:
    """What a unit of work sees inside the writer's transaction."""

    def __init__(self, transaction: Transaction, events: EventLog, routing: Routing,
                 recvtime: str, max_descendants: int, max_event_bytes: int) -> None:
        self.transaction = transaction
        """Hand it to a repository (`repo.writes(ctx.transaction)`) to write in it."""
        self.recvtime = recvtime
        """The clock's reading for this transaction: every event appended in it was
        received then."""
        self._log = events
        self._writes = events.writes(transaction)
        self._routing = routing
        self._committed: list[StoredEvent] = []
        self._after_commit: list[Callable[[], None]] = []
        self._routes: list[RoutedRow] = []
        """Routed events' routes and target hits, written together into their rows."""
        self._hits: list[TargetRecord] = []
        """Hits on events routed before (`hand_over`), added to what they hold."""
        self._budget = DescendantBudget(max_descendants, self._writes.root_use)
        self._max_event_bytes = max_event_bytes
        self._gathered: dict[str, Gathered] = {}
        self._steps = 0
        """Steps open now (marks taken and not yet done or undone)."""

    # -- the public write API ---------------------------------------------------------
    async def publish(self, event: dict[str, Any], *, cause: StoredEvent | None = None,
                      fresh_root: bool = False, elide: bool = False) -> Publication:
        """Append `event` (already validated) and route it, in this transaction.

        Over `max_event_bytes` (lineage attributes included) it raises TooLarge, or with
        `elide` (the broker's own records) its largest `data` values are elided to fit.

        With `cause` the event is derived: it gets causationid, the inherited
        correlationid and a hop count, and counts against its root event's descendant
        budget; past that budget it is not stored (`dropped`) and the root's one loop
        notice is published instead. `fresh_root`: an operator's act (a re-emit, a quick
        action's result) keeps the lineage attributes but starts a budget of its own."""
        root = 0
        if cause is not None:
            event = with_lineage(event, cause.event)
        event, raw = self._fitted(event, elide)
        if cause is not None and not fresh_root:
            root = cause.lineage_root
            if not await self._budget.take(root):
                await self.loop_notice(cause, "descendant_limit", self._budget.limit,
                                       event=event)
                return Publication(0, dropped=True)
        return await self._append(event, root, raw)

    async def publish_derived(
        self, derived: Sequence[tuple[dict[str, Any], StoredEvent]], *, elide: bool = False,
        appended: Callable[[list[Publication]], Awaitable[None]] | None = None,
    ) -> list[Publication]:
        """`publish(event, cause=cause, elide=elide)` for each (event, cause), in order,
        with one append for all of them (one identity probe, one insert path) instead of
        one each: each keeps its own lineage and counts against its own root's budget;
        one past that budget is dropped and the root's loop notice published where
        `publish` would have published it (after the events before it). Then each stored
        event is routed, in order; `appended` (if given) runs before that routing, with
        every publication, so what the caller records with the seqs precedes what
        routing the events does."""
        answers: list[Publication] = []
        run: list[EventItem] = []
        roots: list[int] = []
        limit = self._budget.limit
        stored: list[StoredEvent] = []
        for event, cause in derived:
            event, raw = self._fitted(with_lineage(event, cause.event), elide)
            root = cause.lineage_root
            if not await self._budget.take(root):
                # What came before is appended first: the notice follows it, as it
                # would one publish at a time.
                await self._append_run(run, roots, answers, stored)
                run, roots = [], []
                await self.loop_notice(cause, "descendant_limit", limit, event=event)
                answers.append(Publication(0, dropped=True))
                continue
            run.append((event, raw, None))
            roots.append(root)
        await self._append_run(run, roots, answers, stored)
        if appended is not None:
            await appended(answers)
        passes = self._routing.passes
        for one in stored:
            if not passes(one.event):
                await self._route(one)
        return answers

    async def _append_run(self, run: list[EventItem], roots: list[int],
                          answers: list[Publication], stored: list[StoredEvent]) -> None:
        """`publish_derived`'s append of a run of derived events: each stored one is
        recorded (and kept in `stored`, to route), its publication added to `answers`."""
        if not run:
            return
        results = await self._writes.append_many(run, self.recvtime, roots)
        for (event, raw, _), root, result in zip(run, roots, results, strict=True):
            one = None
            if not result.duplicate:
                one = self._record(result.seq, raw, event, root)
                stored.append(one)
            answers.append(_publication(result, one))

    async def publish_batch(self, events: list[dict[str, Any]], *, elide: bool = False,
                            encoded: list[bytes] | None = None) -> list[Publication]:
        """Append and route a publisher's batch (roots, already validated), in order.
        One event over `max_event_bytes` refuses the batch (TooLarge naming its index),
        unless `elide` (the broker's own records: elided to fit). `encoded`: the events'
        `canonical` bytes, when the caller has them."""
        # No digest: a store that wants one makes it (SQLite compares the bytes).
        items: list[EventItem] = [(fitted, raw, None)
                                  for fitted, raw in self._fitted_batch(events, elide, encoded)]
        results = await self._writes.append_many(items, self.recvtime)
        answers = []
        for (event, raw, _), result in zip(items, results, strict=True):
            stored = None
            if not result.duplicate:
                stored = await self._stored(result.seq, raw, event, 0)
            answers.append(_publication(result, stored))
        return answers

    async def _publish_roots(self, batches: list[RootBatch]
                             ) -> list[list[AppendResult] | OpsbusError]:
        """`publish_batch` for several publishers' batches at once (the writer's fast
        path): one identity probe and one insert statement for all of them, then each
        event routed; each batch's append results (none a conflict). A batch that does
        not fit `max_event_bytes` gets its error and adds nothing. Raises `Regroup` when
        a batch would have to be undone alone (a conflict with a stored event, an
        unexpected error while routing): the writer then rolls the transaction back and
        runs the units one by one, each in its own savepoint."""
        answers: list[list[AppendResult] | OpsbusError] = []
        items: list[EventItem] = []
        kept: list[int] = []
        limit = self._max_event_bytes
        for events, elide, encoded in batches:
            if encoded is not None and max(map(len, encoded), default=0) <= limit:
                # A batch that fits, as nearly all do: `_fitted_batch` spelled out, its
                # items made without a Python step per event.
                kept.append(len(answers))
                answers.append([])
                items.extend(zip(events, encoded, repeat(None, len(events)), strict=True))
                continue
            try:
                fitted = self._fitted_batch(events, elide, encoded)
            except OpsbusError as exc:
                answers.append(exc)
                continue
            kept.append(len(answers))
            answers.append([])
            items.extend((event, raw, None) for event, raw in fitted)
        if not items:
            return answers
        results = await self._writes.append_many(items, self.recvtime)
        if any(result.conflict for result in results):
            raise Regroup("a conflicting duplicate")
        at = 0
        for slot in kept:
            end = at + len(batches[slot][0])
            answers[slot] = results[at:end]
            at = end
        # Events nothing routes (no route, no hop count) are only recorded: no
        # coroutine per event then. `_route` spelled out: one coroutine per event less.
        # `_record` spelled out too: the seqs ascend, so the budget hears of the first.
        fresh = next((result.seq for result in results if not result.duplicate), None)
        if fresh is not None:
            self._budget.appended(fresh)
        passes, route = self._routing.passes, self._routing.route
        routes = self._routes
        recvtime, committed = self.recvtime, self._committed.append
        try:
            if not any(map(result_duplicate, results)) and all(map(passes, map(item_event, items))):
                # Every event new and none to route (a batch where no route applies):
                # recorded by one C loop, with no Python step per event around each
                # `StoredEvent` made.
                self._committed.extend(map(StoredEvent, map(result_seq, results),
                                           repeat(recvtime), map(item_bytes, items),
                                           repeat(()), map(item_event, items)))
            else:
                for (event, raw, _), result in zip(items, results, strict=True):
                    if not result.duplicate:
                        stored = StoredEvent(result.seq, recvtime, raw, (), event)
                        committed(stored)
                        if not passes(event):
                            routed = await route(self, stored)
                            if routed.routes:
                                stored.routes = routed.routes
                                routes.append((result.seq, routed.routes, routed.hits))
        except Exception as exc:
            raise Regroup(f"routing failed: {exc!r}") from exc
        # Now, not at the end: a backend that still holds the batch's rows back writes
        # the routes and hits into them (each row written once) instead of updating
        # them later.
        # No step is open here, so nothing recorded so far can be undone any more.
        await self._write_routes()
        return answers

    async def hand_over(self, stored: StoredEvent, target: str, *, via: str
                        ) -> dict[str, Any]:
        """Hand a stored event to one target (`queue:deadletter`) as route `via` would,
        recording the hit with the event; returns the target's detail."""
        record = await self._routing.hand_over(self, stored, target, via)
        self._hits.append(record)
        return record.detail

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this transaction has committed (e.g. wake a dispatcher).
        It runs on the event loop, after the commit is durable."""
        self._after_commit.append(callback)

    def gathered(self, key: str, make: Callable[[], G]) -> G:
        """The feature's gathered work in this transaction (made on first use), finished
        before COMMIT."""
        found = self._gathered.get(key)
        if found is None:
            found = self._gathered[key] = make()
            if self._steps:  # made inside a step: undone from its start
                found.mark()
        return found  # type: ignore[return-value]

    def attempt(self, *, savepoint: bool = True) -> Attempt:
        """A step that is undone as a whole if it raises: its writes (in a savepoint)
        and what it published, recorded or scheduled in this context. `savepoint=False`
        for steps that write nothing (two statements saved per step)."""
        return Attempt(self, self.transaction.savepoint() if savepoint else None)

    def step_mark(self) -> Mark:
        """`attempt(savepoint=False)` spelled out, for a caller that runs it per event
        (the router, per target hit): a point `undo_step` returns this context to."""
        return self._mark()

    def undo_step(self, mark: Mark) -> None:
        """Forget what was published, recorded, scheduled or gathered since `mark`."""
        self._undo(mark)

    def step_done(self) -> None:
        """The step `step_mark` began succeeded: it will not be undone alone."""
        self._step_ended()

    async def loop_notice(self, at: StoredEvent, reason: str, limit: int, *,
                          event: dict[str, Any] | None = None) -> None:
        """Publish the root's one `opsbus.loop.detected`, the first time its chain is
        cut: `at` is the stored event where it was cut (routing found it over the hop
        limit), or the cause of `event`, a derived event that was not stored."""
        root = at.lineage_root
        if not await self._budget.first_notice(root):
            return
        chain = await self.causal_chain(at)
        cut = event if event is not None else at.event
        first = chain[0] if chain else {}
        data = loop_notice(reason=reason, limit=limit, event=cut,
                           seq=None if event is not None else at.seq,
                           root={"seq": root, "id": first.get("id"), "type": first.get("type")},
                           chain=chain)
        notice = new_event(type=LOOP_TYPE, source=LOOP_SOURCE, subject=str(cut.get("type")),
                           time=self.recvtime, data=data, causationid=str(at.event["id"]),
                           correlationid=str(at.event.get("correlationid") or at.event["id"]),
                           hopcount=0)
        log.warning("loop detected (%s) at seq %s (%s): %s", reason, at.seq, cut.get("type"),
                    " -> ".join("/".join(c["routes"]) or c["type"] for c in chain))
        # Counted against the same root (first_notice did), so the notice's own
        # descendants stay within its budget.
        notice, raw = self._fitted(notice, True)
        await self._append(notice, root, raw)

    async def causal_chain(self, stored: StoredEvent, limit: int = 32
                           ) -> list[dict[str, Any]]:
        """The events that led to `stored`, root first, with the routes each matched."""
        chain = [stored]
        pending = {e.event["id"]: e for e in self._committed}
        current = stored
        while len(chain) < limit:
            cause_id = current.event.get("causationid")
            if not cause_id:
                break
            parent = pending.get(cause_id) or await self._stored_cause(
                current, str(cause_id), stored.lineage_root)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return [{"seq": e.seq, "id": e.event["id"], "type": e.event["type"],
                 "routes": list(e.routes)} for e in reversed(chain)]

    async def _stored_cause(self, effect: StoredEvent, cause_id: str, root: int
                            ) -> StoredEvent | None:
        """The stored event `effect` names as its cause, found through an index only: no
        index serves an id alone, and this runs in the writer's transaction. A cause is
        looked for under the effect's source (a publisher re-emitting its own events),
        then within the effect's correlation (every derived event shares its root's),
        then as the root itself; the chain stops where none of these finds it."""
        found = await self._log.find(str(effect.event["source"]), cause_id)
        if found is not None and found.seq < effect.seq:
            return found
        correlation = effect.event.get("correlationid")
        if correlation:
            earlier = await self._log.read(effect.seq, 1, correlationid=str(correlation),
                                           id=cause_id, descending=True)
            if earlier:
                return earlier[0]
        first = await self._log.get(root) if root < effect.seq else None
        return first if first is not None and first.event["id"] == cause_id else None

    # -- for the writer ----------------------------------------------------------------
    def _fitted_batch(self, events: list[dict[str, Any]], elide: bool,
                      encoded: list[bytes] | None) -> list[tuple[dict[str, Any], bytes]]:
        many = len(events) > 1
        if encoded is None:
            return [self._fitted(event, elide, index if many else None)
                    for index, event in enumerate(events)]
        if max(map(len, encoded), default=0) <= self._max_event_bytes:
            return list(zip(events, encoded, strict=True))  # all fit: nothing to elide
        return [self._fitted(event, elide, index if many else None, raw)
                for index, (event, raw) in enumerate(zip(events, encoded, strict=True))]

    def _fitted(self, event: dict[str, Any], elide: bool, index: int | None = None,
                raw: bytes | None = None) -> tuple[dict[str, Any], bytes]:
        """The event as it will be stored, and its bytes (`raw` when the caller made
        them): within `max_event_bytes`."""
        if raw is None:
            raw = canonical(event)
        limit = self._max_event_bytes
        if len(raw) <= limit:
            return event, raw
        if not elide:
            raise too_large(len(raw), limit, index)
        event = elided(event, len(raw), limit)
        log.warning("%s %s: data elided to fit %d bytes", event.get("type"), event.get("id"),
                    limit)
        return event, canonical(event)

    async def _append(self, event: dict[str, Any], root: int, raw: bytes) -> Publication:
        result = await self._writes.append(event, raw, self.recvtime, None, root)
        stored = None if result.duplicate else await self._stored(result.seq, raw, event,
                                                                    root)
        return _publication(result, stored)

    async def _stored(self, seq: int, raw: bytes, event: dict[str, Any], root: int
                      ) -> StoredEvent:
        stored = self._record(seq, raw, event, root)
        if not self._routing.passes(event):
            await self._route(stored)
        return stored

    def _record(self, seq: int, raw: bytes, event: dict[str, Any], root: int
                ) -> StoredEvent:
        """A just-appended event, recorded as committed with this transaction."""
        self._budget.appended(seq)
        stored = StoredEvent(seq, self.recvtime, raw, (), event, root=root)
        self._committed.append(stored)
        return stored

    async def _route(self, stored: StoredEvent) -> None:
        """Route a recorded event; its matched routes and hits are kept with it."""
        routed = await self._routing.route(self, stored)
        if routed.routes:
            stored.routes = routed.routes
            self._routes.append((stored.seq, routed.routes, routed.hits))

    def _mark(self) -> Mark:
        # Taken once per target hit: plain lengths, and the gathered work's own marks
        # in the order it was made (work made after the mark is undone from its start).
        self._steps += 1
        return (len(self._committed), len(self._after_commit), len(self._routes),
                len(self._hits), self._budget.mark(),
                [g.mark() for g in self._gathered.values()] if self._gathered else None)

    def _undo(self, mark: Mark) -> None:
        del self._committed[mark[0]:]
        del self._after_commit[mark[1]:]
        del self._routes[mark[2]:]
        del self._hits[mark[3]:]
        self._budget.undo(mark[4])
        marks = mark[5] or []
        for index, gathered in enumerate(self._gathered.values()):
            gathered.undo(marks[index] if index < len(marks) else None)
        self._step_ended()

    def _step_ended(self) -> None:
        # With no step open nothing gathered can be undone but with the transaction:
        # the gathered work may drop what it kept to undo (`Gathered.settle`).
        self._steps -= 1
        if not self._steps:
            for gathered in self._gathered.values():
                settle = getattr(gathered, "settle", None)
                if settle is not None:
                    settle()

    async def _finish(self) -> None:
        """Finish the features' gathered work; a failure is logged and undone (what it
        would have published is lost, the units' own work commits)."""
        for _ in range(FINISH_PASSES):
            busy = False
            for gathered in list(self._gathered.values()):
                try:
                    async with self.attempt():
                        busy = await gathered.finish(self) or busy
                except Exception:
                    log.exception("gathered work could not be finished")
                    return
            if not busy:
                return
        log.error("gathered work still pending after %d passes", FINISH_PASSES)

    async def _flush(self) -> None:
        """Write what routing gathered during the transaction (once, before COMMIT)."""
        if self._gathered:
            await self._finish()
        await self._write_routes()
        if self._hits:
            await self._writes.add_targets(self._hits)
            self._hits.clear()
        changes = self._budget.changes()
        if changes:
            await self._writes.add_root_use(changes)

    async def _write_routes(self) -> None:
        if self._routes:
            await self._writes.set_routes(self._routes)
            self._routes.clear()

    @property
    def _committed_events(self) -> list[StoredEvent]:
        return self._committed

    @property
    def _callbacks(self) -> list[Callable[[], None]]:
        return self._after_commit


class Attempt:
    """`WriteContext.attempt`. A plain class rather than an `asynccontextmanager`: it
    runs for every target hit, and an async generator per hit (made, registered with the
    loop, finalised) cost more than the router's own work."""

    __slots__ = ("_ctx", "_mark", "_savepoint")

    def __init__(self, ctx: WriteContext,
                 savepoint: AbstractAsyncContextManager[None] | None) -> None:
        self._ctx = ctx
        self._savepoint = savepoint
        self._mark: Mark | None = None

    async def __aenter__(self) -> None:
        self._mark = self._ctx._mark()
        if self._savepoint is not None:
            try:
                await self._savepoint.__aenter__()
            except BaseException:
                self._ctx._undo(self._mark)
                raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if self._savepoint is not None:
                await self._savepoint.__aexit__(kind, exc, tb)  # rolls back on `exc`
        except BaseException:
            assert self._mark is not None
            self._ctx._undo(self._mark)
            raise
        if kind is not None:
            assert self._mark is not None
            self._ctx._undo(self._mark)
        else:
            self._ctx._step_ended()


def _publication(result: AppendResult, stored: StoredEvent | None) -> Publication:
    return Publication(result.seq, result.duplicate, result.conflict, result.dropped, stored)
