"""The bus: one writer task that commits many callers' work per transaction (group commit),
routes each event inside that transaction, then fans out after COMMIT."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from itertools import repeat
from operator import itemgetter
from time import perf_counter
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from broker.bus.commit_health import CommitHealth
from broker.bus.context import Publication, Regroup, RootBatch, Routing, WriteContext
from broker.bus.log import EventLog, result_duplicate, result_seq
from broker.errors import Conflict, OpsbusError, Unavailable

if TYPE_CHECKING:
    from broker.bus.log import StoredEvent
    from broker.clock import Clock
    from broker.hub import Hub
    from broker.store.transaction import Transaction

log = logging.getLogger(__name__)
T = TypeVar("T")

Transform = Callable[[dict[str, Any]], dict[str, Any] | None]
"""Enriches an event before it is stored, or drops it (None)."""
UnitOfWork = Callable[[WriteContext], Awaitable[T]]
"""What callers hand the writer: work done inside its transaction."""
RETRY_AFTER_S = 5
"""Seconds a publisher is told to wait when the store cannot commit (a full disk)."""


class Published(NamedTuple):
    """The answer to a publisher for one event (a named tuple: one is made per event
    published, and a tuple is the cheapest immutable record to make)."""

    seq: int
    id: str
    duplicate: bool
    dropped: bool = False
    """A plugin transform dropped the event: nothing was stored (seq is 0)."""

    def to_dict(self) -> dict[str, Any]:
        answer = {"seq": self.seq, "id": self.id, "duplicate": self.duplicate}
        if self.dropped:
            answer["dropped"] = True
        return answer


class Transforms:
    """The chain of plugin transforms every published event passes, in order (the plugin
    host replaces it whole when plugins or `[plugins] transforms` change)."""

    def __init__(self) -> None:
        self.chain: tuple[Transform, ...] = ()

    def replace(self, chain: list[Transform]) -> None:
        self.chain = tuple(chain)

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event after each transform in order; None once one drops it."""
        result = event
        for transform in self.chain:
            out = transform(result)
            if out is None:
                return None
            result = out
        return result


class _Work(Generic[T]):
    __slots__ = ("fn", "future", "publish", "size", "started")

    def __init__(self, fn: UnitOfWork[T] | None, size: int, future: asyncio.Future[T],
                 publish: RootBatch | None = None, started: float = 0.0) -> None:
        self.fn = fn
        """The unit of work; None for a publisher's batch (`publish`), which the writer
        appends with the group's other batches, or alone (`Bus._append_unit`)."""
        self.size = size
        self.future = future
        self.publish = publish
        self.started = started
        """`perf_counter()` when a publish began (the ingest histogram's start)."""


class Bus:
    """Publish events and run units of work through the single writer: the one way
    anything is written."""

    def __init__(self, events: EventLog,
                 transaction: Callable[[], AbstractAsyncContextManager[Transaction]],
                 routing: Routing, hub: Hub, clock: Clock, *, max_batch: int = 2000,
                 max_descendants: int = 100, max_event_bytes: int = 256 * 1024) -> None:
        self._events = events
        self._transaction = transaction
        self._routing = routing
        self._hub = hub
        self._clock = clock
        self.max_batch = max_batch
        self.max_descendants = max_descendants
        self.max_event_bytes = max_event_bytes
        """Every event appended is held to it, whichever way it came in (bus.sizing)."""
        self.transforms = Transforms()
        # A deque and one waiter rather than an asyncio.Queue: a put is an append, and
        # only the put that finds the writer waiting wakes it (one per group).
        self._queue: deque[_Work[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.health = CommitHealth(clock)
        """Whether commits succeed (readiness), and the one log of their failures."""
        self._stopping = False
        self.commits = 0
        self.events_committed = 0
        self.observe_ingest: Callable[[float], None] = _ignore
        """Seconds from publish to its commit (a metrics histogram's observe)."""
        self.observe_commit: Callable[[float], None] = _ignore
        """Seconds one group transaction took, from begin to commit."""
        self.observers: list[Callable[[list[StoredEvent]], None]] = []
        """Called with each committed batch, after the fan-out and before the callers
        hear of it (the catalog learns here, off the transaction)."""
        self.fanout: Callable[[list[StoredEvent]], None] = hub.publish
        """Takes each committed batch: the hub, or the backend's live tail when several
        processes share the store (`Backend.start_live`)."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._writer(), name="opsbus-writer")

    async def stop(self) -> None:
        """Refuse new work, commit what is queued, then stop the writer."""
        self._stopping = True
        if self._task is not None:
            self._put(_Work(_stop_marker, 0, self._future()))
            await self._task
            self._task = None

    def _future(self) -> asyncio.Future[Any]:
        # The future's own constructor: `loop.create_future` is a Python frame more.
        return asyncio.Future(loop=self._loop or asyncio.get_running_loop())

    def _put(self, work: _Work[Any]) -> None:
        self._queue.append(work)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _refused(self) -> asyncio.Future[Any]:
        refused = self._future()
        refused.set_exception(Unavailable("the broker is shutting down"))
        return refused

    async def run(self, fn: UnitOfWork[T], size: int = 1) -> T:
        """Run `fn` inside the next group transaction; returns once it has committed.
        If `fn` raises, its own writes are rolled back and the error is re-raised here;
        the other work in the group is unaffected."""
        if self._stopping or self._task is None:
            raise Unavailable("the broker is shutting down")
        work: _Work[T] = _Work(fn, size, self._future())
        self._put(work)
        return await work.future

    def publish(self, events: list[dict[str, Any]], *, elide: bool = False,
                encoded: list[bytes] | None = None) -> Awaitable[list[Published]]:
        """Append and route validated events as one all-or-nothing unit; await it for the
        answers, there once the unit has committed. Plugin transforms run first, here
        and not in the writer, so a slow or failing one only costs its own publisher (an
        OpsbusError naming the plugin fails just this publish).
        An event over `max_event_bytes` refuses the unit (TooLarge), or with `elide` (the
        broker's own records) has its data elided to fit. `encoded`: each event's
        `canonical` bytes when the caller made them already (parsing did).

        Without transforms the awaitable is the writer's own future for the unit: the
        publisher waits on it directly, with no coroutine of the bus in between."""
        if self.transforms.chain:
            return self._transformed(events, elide)
        return self._append(events, elide, encoded, perf_counter())

    async def _transformed(self, events: list[dict[str, Any]], elide: bool
                           ) -> list[Published]:
        started = perf_counter()
        shaped = [self.transforms.apply(event) for event in events]
        kept = [event for event in shaped if event is not None]
        appended = iter(await self._append(kept, elide, None, started) if kept else [])
        return [Published(0, str(original["id"]), False, dropped=True) if event is None
                else next(appended) for event, original in zip(shaped, events, strict=True)]

    def _append(self, events: list[dict[str, Any]], elide: bool,
                encoded: list[bytes] | None, started: float
                ) -> asyncio.Future[list[Published]]:
        """The unit's future; the writer observes the ingest time as it answers."""
        if self._stopping or self._task is None:
            return self._refused()
        # `_Work(...)` and `_put` spelled out: two Python frames fewer per publish.
        future: asyncio.Future[list[Published]] = asyncio.Future(loop=self._loop)
        work: _Work[list[Published]] = _Work.__new__(_Work)
        work.fn = None
        work.size = len(events)
        work.future = future
        work.publish = (events, elide, encoded)
        work.started = started
        self._queue.append(work)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return future

    async def _writer(self) -> None:
        queue = self._queue
        while True:
            while not queue:
                waiter = self._waiter = self._future()
                await waiter
            first = queue.popleft()
            group = [first]
            size = first.size
            while size < self.max_batch and queue:
                work = queue.popleft()
                group.append(work)
                size += work.size
            stop = any(w.fn is _stop_marker for w in group)
            if stop:
                group = [w for w in group if w.fn is not _stop_marker]
            if group:
                await self._commit_group(group)
            if stop and not queue:
                return

    async def _transact(self, group: list[_Work[Any]], together: bool
                        ) -> tuple[WriteContext, list[_Outcome], _LiveFanOut]:
        """One transaction for the group. `together`: the publishers' batches are
        appended in one go (one probe, one insert) before the other units run; a batch
        that would have to be undone alone raises Regroup (nothing is committed)."""
        outcomes: list[_Outcome] = []
        async with self._transaction() as tx:
            ctx = WriteContext(tx, self._events, self._routing, self._clock.stamp(),
                               self.max_descendants, self.max_event_bytes)
            rest = group
            if together:
                batches = [w for w in group if w.publish is not None]
                rest = [w for w in group if w.publish is None]
                if batches:
                    answers = await ctx._publish_roots(
                        [w.publish for w in batches if w.publish is not None])
                    new = tuple.__new__  # `Published` without its Python frame
                    for work, answer in zip(batches, answers, strict=True):
                        if isinstance(answer, OpsbusError):
                            outcomes.append((work, None, answer))
                            continue
                        assert work.publish is not None
                        # No conflict among them (`_publish_roots` regroups then).
                        events = work.publish[0]
                        if len(answer) == 1:
                            # A single event, as most publishes are: no comprehension
                            # (a Python frame in itself) for its one answer.
                            one = answer[0]
                            outcomes.append((work, [new(Published, (
                                one.seq, str(events[0]["id"]), one.duplicate, False))], None))
                            continue
                        # One C loop: `Published((seq, str(id), duplicate, False))` each.
                        outcomes.append((work, list(map(new, repeat(Published), zip(
                            map(result_seq, answer), map(str, map(_ID, events)),
                            map(result_duplicate, answer), repeat(False, len(answer)),
                            strict=True))), None))
            for work in rest:
                try:
                    async with ctx.attempt():
                        if work.fn is None:
                            assert work.publish is not None
                            result = await _append_unit(ctx, work.publish)
                        else:
                            result = await work.fn(ctx)
                    outcomes.append((work, result, None))
                except Exception as exc:  # one caller's failure is not the group's
                    if not isinstance(exc, OpsbusError):
                        log.exception("unexpected error in a write")
                    outcomes.append((work, None, exc))
            await ctx._flush()
            # Live readers get the batch the moment COMMIT returns (before this
            # coroutine resumes): the durable promise holds, and the fan-out does not
            # wait for the commit's result to come back through the awaits below.
            live = tx.committed = _LiveFanOut(self.fanout, ctx._committed_events)
        return ctx, outcomes, live

    async def _commit_group(self, group: list[_Work[Any]]) -> None:
        started = perf_counter()
        try:
            try:
                ctx, outcomes, live = await self._transact(group, together=True)
            except Regroup as why:
                log.debug("group of %d units committed one by one: %s", len(group), why)
                ctx, outcomes, live = await self._transact(group, together=False)
        except Exception as exc:
            self.health.failed(exc)
            for work in group:
                if not work.future.done():
                    work.future.set_exception(
                        Unavailable(f"the store could not commit: {exc}",
                                    retry_after=RETRY_AFTER_S))
            return
        self.health.committed()
        self.observe_commit(perf_counter() - started)
        committed = ctx._committed_events
        self.commits += 1
        self.events_committed += len(committed)
        live()  # done already, unless the backend did not call it
        for observe in self.observers:
            try:
                observe(committed)
            except Exception:
                log.exception("a commit observer failed")
        observe_ingest = self.observe_ingest
        answered = perf_counter()
        for work, result, error in outcomes:
            if work.future.done():
                continue
            if error is None:
                work.future.set_result(result)
                if work.publish is not None:
                    observe_ingest(answered - work.started)
            else:
                work.future.set_exception(error)
        for callback in ctx._callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")


class _LiveFanOut:
    """A committed batch's hand-over to the live fan-out, run once: by the backend as
    soon as COMMIT has returned (`Transaction.committed`), else by the writer."""

    __slots__ = ("_done", "_events", "_fanout")

    def __init__(self, fanout: Callable[[list[StoredEvent]], None],
                 events: list[StoredEvent]) -> None:
        self._fanout = fanout
        self._events = events
        self._done = False

    def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._fanout(self._events)
        except Exception:  # the commit stands; its callers still hear of it
            log.exception("the live fan-out of a commit failed")


_ID = itemgetter("id")

_Outcome = tuple[_Work[Any], Any, BaseException | None]
"""A unit's result or error, handed to its caller once the group has committed."""


def _answers(events: list[dict[str, Any]], results: list[Publication]) -> list[Published]:
    """The publisher's answers, or Conflict naming the first event stored before with
    other content (the unit is then undone: nothing of its batch is stored)."""
    answers = []
    # `tuple.__new__` is the named tuple's own constructor without its Python frame
    # (one answer per event published).
    new = tuple.__new__
    for index, (event, result) in enumerate(zip(events, results, strict=True)):
        if result.conflict:
            raise Conflict(
                f"an event with source {event['source']!r} and id {event['id']!r}"
                f" is already stored (seq {result.seq}) with different content",
                seq=result.seq, index=index if len(events) > 1 else None,
            )
        answers.append(new(Published, (result.seq, str(event["id"]), result.duplicate,
                                       False)))
    return answers


async def _append_unit(ctx: WriteContext, batch: RootBatch) -> list[Published]:
    """A publisher's batch appended as a unit of its own (the group's batches could not
    be appended together)."""
    events, elide, encoded = batch
    return _answers(events, await ctx.publish_batch(events, elide=elide, encoded=encoded))


async def _stop_marker(ctx: WriteContext) -> None:
    return None


def _ignore(_seconds: float) -> None:
    """The default observer: metrics are off."""
