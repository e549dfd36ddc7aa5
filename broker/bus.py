"""The bus: one writer task that commits many callers' work per transaction (group
commit), routes each event inside that transaction, then fans out after COMMIT."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson

from broker.clock import Clock
from broker.errors import Conflict, OpsbusError, Unavailable
from broker.events import new_event
from broker.hub import Hub
from broker.lineage import (
    LOOP_SOURCE,
    LOOP_TYPE,
    DescendantBudget,
    loop_notice,
    with_lineage,
)
from broker.store.base import Store, WriteTxn
from broker.store.records import AppendResult, StoredEvent, TargetRecord

if TYPE_CHECKING:
    from broker.routing import Router

log = logging.getLogger(__name__)
T = TypeVar("T")

def canonical(event: dict[str, Any]) -> bytes:
    """The bytes stored and streamed for an event (compact JSON, attribute order kept)."""
    return orjson.dumps(event)


def digest_of(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Published:
    """The answer to a publisher for one event."""

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


class WriteContext:
    """What a unit of work sees inside the writer's transaction: the store transaction
    and `publish`, which appends and routes an event in the same transaction."""

    def __init__(self, bus: Bus, tx: WriteTxn, recvtime: str) -> None:
        self.bus = bus
        self.tx = tx
        self.recvtime = recvtime
        self.committed: list[StoredEvent] = []
        self.after_commit: list[Callable[[], None]] = []
        self.pending_routes: list[StoredEvent] = []
        self.pending_targets: list[TargetRecord] = []
        self.budget = DescendantBudget(bus.max_descendants, tx.root_use)

    def mark(self) -> tuple[int, int, int, int, int]:
        """Where this unit of work starts, to undo its in-memory effects if it fails."""
        return (len(self.committed), len(self.after_commit), len(self.pending_routes),
                len(self.pending_targets), self.budget.mark())

    def undo(self, mark: tuple[int, int, int, int, int]) -> None:
        del self.committed[mark[0]:]
        del self.after_commit[mark[1]:]
        del self.pending_routes[mark[2]:]
        del self.pending_targets[mark[3]:]
        self.budget.undo(mark[4])

    async def flush(self) -> None:
        """Write the matched routes, target hits and lineage use gathered during the
        transaction."""
        if self.pending_routes:
            await self.tx.set_routes_many([(e.seq, e.routes) for e in self.pending_routes])
            self.pending_routes.clear()
        if self.pending_targets:
            await self.tx.add_targets(self.pending_targets)
            self.pending_targets.clear()
        changes = self.budget.changes()
        if changes:
            await self.tx.add_root_use(changes)

    async def publish(
        self, event: dict[str, Any], *, cause: StoredEvent | None = None,
        fresh_root: bool = False,
    ) -> tuple[AppendResult, StoredEvent | None]:
        """Append `event` (already validated) and route it. With `cause`, the event is
        derived: it gets causationid, the inherited correlationid and a hop count, and
        counts against its root event's descendant budget; past that budget it is not
        stored (the result says `dropped`) and the root's one loop notice is published.
        `fresh_root`: an operator's act (a re-emit) starts a budget of its own while
        keeping the lineage attributes. Returns the append result and the stored event
        (None for a duplicate or a dropped event)."""
        root = 0
        if cause is not None:
            event = with_lineage(event, cause.event)
            if not fresh_root:
                root = cause.lineage_root
                if not await self.budget.take(root):
                    await self.loop_notice(cause, "descendant_limit", self.bus.max_descendants,
                                           event=event)
                    return AppendResult(0, False, dropped=True), None
        return await self._append(event, root)

    async def _append(self, event: dict[str, Any], root: int
                      ) -> tuple[AppendResult, StoredEvent | None]:
        raw = canonical(event)
        result = await self.tx.append_event(event, raw, self.recvtime, digest_of(raw), root)
        if result.duplicate:
            return result, None
        self.budget.appended(result.seq)
        stored = StoredEvent(result.seq, self.recvtime, raw, (), event, root=root)
        self.committed.append(stored)
        await self.bus.router.route(self, stored)
        return result, stored

    async def publish_many(self, events: list[dict[str, Any]]) -> list[AppendResult]:
        """Append and route many validated events (a publisher's batch) in order."""
        items = []
        for event in events:
            raw = canonical(event)
            items.append((event, raw, digest_of(raw)))
        results = await self.tx.append_events(items, self.recvtime)
        for (event, raw, _), result in zip(items, results, strict=True):
            if not result.duplicate:
                self.budget.appended(result.seq)
                stored = StoredEvent(result.seq, self.recvtime, raw, (), event)
                self.committed.append(stored)
                await self.bus.router.route(self, stored)
        return results

    async def loop_notice(self, at: StoredEvent, reason: str, limit: int, *,
                          event: dict[str, Any] | None = None) -> None:
        """Publish the root's one `opsbus.loop.detected` (only the first time its chain
        is cut): `at` is the stored event where it was cut (its own event, or the cause
        of `event`, the derived event that was not stored)."""
        root = at.lineage_root
        if not await self.budget.first_notice(root):
            return
        chain = await causal_chain(self, at)
        cut = event if event is not None else at.event
        root_event = chain[0] if chain else {}
        data = loop_notice(reason=reason, limit=limit, event=cut,
                           seq=None if event is not None else at.seq,
                           root={"seq": root, "id": root_event.get("id"),
                                 "type": root_event.get("type")}, chain=chain)
        notice = new_event(type=LOOP_TYPE, source=LOOP_SOURCE, subject=str(cut.get("type")),
                           time=self.recvtime,
                           data=data, causationid=str(at.event["id"]),
                           correlationid=str(at.event.get("correlationid") or at.event["id"]),
                           hopcount=0)
        log.warning("loop detected (%s) at seq %s (%s): %s", reason, at.seq, cut.get("type"),
                    " -> ".join("/".join(c["routes"]) or c["type"] for c in chain))
        # Counted against the same root, so the notice's own descendants stay bounded.
        await self._append(notice, root)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this transaction has committed (e.g. wake a dispatcher)."""
        self.after_commit.append(callback)


async def causal_chain(ctx: WriteContext, stored: StoredEvent, limit: int = 32
                       ) -> list[dict[str, Any]]:
    """The events that led to `stored`, root first, with the routes each one matched."""
    chain = [stored]
    pending = {e.event["id"]: e for e in ctx.committed}
    current = stored
    while len(chain) < limit:
        cause_id = current.event.get("causationid")
        if not cause_id:
            break
        parent = pending.get(cause_id)
        if parent is None:
            found = await ctx.bus.store.find_by_id(str(cause_id))
            parent = found[-1] if found else None
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return [{"seq": e.seq, "id": e.event["id"], "type": e.event["type"],
             "routes": list(e.routes)} for e in reversed(chain)]


def transformed(transforms: list[Callable[[dict[str, Any]], dict[str, Any] | None]],
                event: dict[str, Any]) -> dict[str, Any] | None:
    """The event after each transform in order; None once one drops it."""
    result = event
    for transform in transforms:
        out = transform(result)
        if out is None:
            return None
        result = out
    return result


@dataclass(eq=False)
class _Work(Generic[T]):
    fn: Callable[[WriteContext], Awaitable[T]]
    size: int
    future: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Bus:
    """Publish events and run state changes through the single writer."""

    def __init__(self, store: Store, hub: Hub, router: Router, clock: Clock, *,
                 max_batch: int = 2000, max_descendants: int = 100) -> None:
        self.store = store
        self.clock = clock
        self.hub = hub
        self.router = router
        self.max_batch = max_batch
        self.max_descendants = max_descendants
        self._queue: asyncio.Queue[_Work[Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.commits = 0
        self.events_committed = 0
        self.observe_ingest: Callable[[float], None] = _ignore
        """Seconds from publish to its commit (a metrics histogram's observe)."""
        self.fanout: Callable[[list[StoredEvent]], None] = hub.publish
        """Takes each committed batch (the hub, or the store's live tail across replicas)."""
        self.observe_commit: Callable[[float], None] = _ignore
        """Seconds one group transaction took, from begin to commit."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="opsbus-writer")

    async def stop(self) -> None:
        """Refuse new work, commit what is queued, then stop the writer."""
        self._stopping = True
        if self._task is not None:
            await self._queue.put(_Work(_stop_marker, 0))
            await self._task
            self._task = None

    async def run(self, fn: Callable[[WriteContext], Awaitable[T]], size: int = 1) -> T:
        """Run `fn` inside the next group transaction; returns once it has committed.
        If `fn` raises, its own writes are rolled back and the error is re-raised here;
        the other work in the group is unaffected."""
        if self._stopping or self._task is None:
            raise Unavailable("the broker is shutting down")
        work: _Work[T] = _Work(fn, size)
        self._queue.put_nowait(work)
        return await work.future

    async def publish(self, events: list[dict[str, Any]]) -> list[Published]:
        """Append and route validated events as one all-or-nothing unit. Plugin transforms
        run first, here and not in the writer, so a slow or failing one only costs its
        own publisher (an OpsbusError naming the plugin fails just this publish)."""
        started = perf_counter()
        if not self.router.transforms:
            answers = await self._append(events)
            self.observe_ingest(perf_counter() - started)
            return answers
        shaped = [transformed(self.router.transforms, event) for event in events]
        kept = [event for event in shaped if event is not None]
        appended = iter(await self._append(kept) if kept else [])
        self.observe_ingest(perf_counter() - started)
        return [Published(0, str(original["id"]), False, dropped=True) if event is None
                else next(appended) for event, original in zip(shaped, events, strict=True)]

    async def _append(self, events: list[dict[str, Any]]) -> list[Published]:
        async def append_all(ctx: WriteContext) -> list[Published]:
            answers = []
            results = await ctx.publish_many(events)
            for index, (event, result) in enumerate(zip(events, results, strict=True)):
                if result.conflict:
                    raise Conflict(
                        f"an event with source {event['source']!r} and id {event['id']!r}"
                        f" is already stored (seq {result.seq}) with different content",
                        seq=result.seq, index=index if len(events) > 1 else None,
                    )
                answers.append(Published(result.seq, str(event["id"]), result.duplicate))
            return answers

        return await self.run(append_all, size=len(events))

    async def _writer(self) -> None:
        while True:
            group = [await self._queue.get()]
            size = group[0].size
            while size < self.max_batch and not self._queue.empty():
                work = self._queue.get_nowait()
                group.append(work)
                size += work.size
            stop = any(w.fn is _stop_marker for w in group)
            group = [w for w in group if w.fn is not _stop_marker]
            if group:
                await self._commit_group(group)
            if stop and self._queue.empty():
                return

    async def _commit_group(self, group: list[_Work[Any]]) -> None:
        outcomes: list[tuple[_Work[Any], Any, BaseException | None]] = []
        started = perf_counter()
        try:
            async with self.store.transaction() as tx:
                ctx = WriteContext(self, tx, self.clock.stamp())
                for work in group:
                    mark = ctx.mark()
                    try:
                        async with tx.savepoint():
                            result = await work.fn(ctx)
                        outcomes.append((work, result, None))
                    except Exception as exc:  # one caller's failure is not the group's
                        if not isinstance(exc, OpsbusError):
                            log.exception("unexpected error in a write")
                        ctx.undo(mark)
                        outcomes.append((work, None, exc))
                await ctx.flush()
        except Exception as exc:
            log.exception("commit failed")
            for work in group:
                if not work.future.done():
                    work.future.set_exception(
                        Unavailable(f"the store could not commit: {exc}")
                    )
            return
        self.observe_commit(perf_counter() - started)
        self.commits += 1
        self.events_committed += len(ctx.committed)
        self.fanout(ctx.committed)
        for work, result, error in outcomes:
            if work.future.done():
                continue
            if error is None:
                work.future.set_result(result)
            else:
                work.future.set_exception(error)
        for callback in ctx.after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")


async def _stop_marker(ctx: WriteContext) -> None:
    return None


def _ignore(_seconds: float) -> None:
    return None
