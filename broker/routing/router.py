"""The router: the live route table and the target handlers, evaluated inside the
writer's transaction for every appended event (the write path's `Routing`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from broker.bus.context import Routed
from broker.bus.lineage import over_hop_limit
from broker.bus.log import StoredEvent, TargetRecord
from broker.config.repository import ConfigObject
from broker.errors import OpsbusError
from broker.routing.index import RouteIndex
from broker.routing.routes import CompiledRoute, compile_route, parse_target

if TYPE_CHECKING:
    from broker.bus.context import WriteContext

log = logging.getLogger(__name__)

TargetHandler = Callable[["WriteContext", StoredEvent, str, str],
                         Awaitable[dict[str, Any] | None]]
"""(ctx, event, route name, target name) -> detail recorded with the target hit."""

QuickHandler = Callable[["WriteContext", StoredEvent, str, str], dict[str, Any] | None]
"""A `TargetHandler`'s synchronous part: the detail when it acted, None (having changed
nothing) when the handler must."""

RouteContributor = Callable[[list[ConfigObject]], Iterable[CompiledRoute]]


class Router:
    """The live route table and the handlers that act on each target kind; the features
    register their target kinds at start-up."""

    def __init__(self, hop_limit: int = 8) -> None:
        self.hop_limit = hop_limit
        self.routes: tuple[CompiledRoute, ...] = ()
        self._handlers: dict[str, TargetHandler] = {}
        self._contributors: list[RouteContributor] = []
        self._index: RouteIndex | None = None
        self._writers: set[str] = set()
        self._undoers: dict[str, tuple[TargetHandler, QuickHandler | None]] = {}
        """The handlers that take their own steps, each with its quick part (if any)."""

    def register_target(self, kind: str, handler: TargetHandler, *,
                        writes: bool = True, undoes: bool = False,
                        quick: QuickHandler | None = None) -> None:
        """Act on `kind:<name>` targets inside the event's transaction. A handler that
        `writes` to the store runs in its own savepoint, so its failure undoes only its
        own work; one that only schedules after-commit work needs none (the savepoint
        would cost two statements per target hit). One that `undoes` its own work when
        it fails (it takes its own steps around what it writes, publishes or gathers,
        and changes nothing before them) runs in no step of the router's: for a queue,
        a step per event it takes cost more than attaching the event. Such a handler
        may come with a `quick` part, tried first on every hit, without a coroutine:
        it acts on the common case itself (returning the detail) or changes nothing
        and returns None, and the handler runs."""
        self._handlers[kind] = handler
        self._undoers.pop(kind, None)
        self._writers.discard(kind)
        if undoes:
            self._undoers[kind] = (handler, quick)
        elif writes:
            self._writers.add(kind)

    def add_contributor(self, contributor: RouteContributor) -> None:
        """Add implicit routes computed from configuration (e.g. subscription filters)."""
        self._contributors.append(contributor)

    def load(self, objects: list[ConfigObject]) -> None:
        """Recompile the table from the stored configuration; swapped in atomically."""
        table: list[CompiledRoute] = []
        for obj in objects:
            if obj.kind == "routes" and obj.spec.get("enabled", True):
                try:
                    table.append(compile_route(obj.spec))
                except OpsbusError as exc:  # stored before a validator change
                    log.error("route %s skipped: %s", obj.name, exc.detail)
        for contributor in self._contributors:
            # One feature's broken contributor must not take every route down with it.
            try:
                table.extend(contributor(objects))
            except Exception:
                log.exception("implicit routes from %r skipped", contributor)
        self.routes = tuple(table)

    def match(self, event: dict[str, Any]) -> list[CompiledRoute]:
        """The routes an event matches, in table order, without side effects."""
        if self._index is None or self._index.routes is not self.routes:
            self._index = RouteIndex(self.routes)
        return self._index.match(event)

    def looping(self, event: dict[str, Any]) -> bool:
        """True when the event's hop count is over the limit: stored, never routed."""
        return over_hop_limit(event, self.hop_limit)

    def passes(self, event: dict[str, Any]) -> bool:
        """Nothing to route and no hop count to check (`Routing.passes`)."""
        return not self.routes and "hopcount" not in event

    async def route(self, ctx: WriteContext, stored: StoredEvent) -> Routed:
        """Evaluate the table for a just-appended event and act on every target hit; the
        write context records the matched routes and hits with the event."""
        event = stored.event
        # `looping` and `match` spelled out: this runs for every event appended.
        if "hopcount" in event and over_hop_limit(event, self.hop_limit):
            await ctx.loop_notice(stored, "hop_limit", self.hop_limit)
            return NOT_ROUTED
        if not self.routes:
            return NOT_ROUTED
        index = self._index
        if index is None or index.routes is not self.routes:
            index = self._index = RouteIndex(self.routes)
        matched = index.match(event)
        if not matched:
            return NOT_ROUTED
        # Set before acting, so a loop notice raised below shows where this event went.
        names = stored.routes = (tuple(dict.fromkeys(r.name for r in matched))
                                 if len(matched) > 1 else (matched[0].name,))
        seq = stored.seq
        hits = []
        undoers = self._undoers
        for route in matched:
            via = route.name
            for kind, name, target in route.hits:
                undoing = undoers.get(kind)
                if undoing is not None:  # `_act` without a step, spelled out
                    handler, quick = undoing
                    try:
                        detail = None if quick is None else quick(ctx, stored, via, name)
                        if detail is None:
                            detail = await handler(ctx, stored, via, name)
                    except Exception as exc:
                        detail = _failed(exc, kind, name, stored)
                else:
                    detail = await self._act(ctx, stored, via, kind, name)
                hits.append(TargetRecord(seq, via, target, detail or {}))
        return Routed(names, hits)

    async def hand_over(self, ctx: WriteContext, stored: StoredEvent, target: str,
                        via: str) -> TargetRecord:
        """Act on one `kind:name` target for `stored`, as if route `via` had hit it."""
        kind, name = parse_target(target)
        detail = await self._act(ctx, stored, via, kind, name)
        return TargetRecord(stored.seq, via, target, detail)

    async def _act(
        self, ctx: WriteContext, stored: StoredEvent, route: str, kind: str, name: str
    ) -> dict[str, Any]:
        handler = self._handlers.get(kind)
        if handler is None:
            # Recorded, so that `GET /v1/events/{seq}` shows why nothing happened.
            return {"skipped": f"no handler for {kind} targets is loaded"}
        try:
            if kind in self._undoers:
                detail = await handler(ctx, stored, route, name)  # takes its own steps
            elif kind in self._writers:
                async with ctx.attempt():
                    detail = await handler(ctx, stored, route, name)
            else:
                # `ctx.attempt(savepoint=False)` without its context manager: this runs
                # for every target hit, and the handlers that write nothing are the
                # common ones (queues that gather, subscriptions, actions).
                mark = ctx.step_mark()
                try:
                    detail = await handler(ctx, stored, route, name)
                except BaseException:
                    ctx.undo_step(mark)
                    raise
                ctx.step_done()
        except Exception as exc:
            return _failed(exc, kind, name, stored)
        return detail or {}


def _failed(exc: Exception, kind: str, name: str, stored: StoredEvent) -> dict[str, Any]:
    """A failing target must not lose the event: the failure is recorded with it (what
    the handler wrote or published was undone with its step)."""
    if not isinstance(exc, OpsbusError):
        log.exception("target %s:%s failed for seq %s", kind, name, stored.seq)
    return {"error": str(exc) or type(exc).__name__}


NOT_ROUTED = Routed((), [])
