"""Routes: named filters with targets, compiled once and evaluated inside the writer's
transaction for every appended event."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.errors import InvalidConfig, OpsbusError
from broker.filters import Filter, compile_filter
from broker.store.records import ConfigObject, StoredEvent, TargetRecord

if TYPE_CHECKING:
    from broker.bus import WriteContext

log = logging.getLogger(__name__)

TARGET_KINDS = ("queue", "subscription", "action", "plugin")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
LOOP_TYPE = "opsbus.loop.detected"

TargetHandler = Callable[["WriteContext", StoredEvent, str, str], Awaitable[dict[str, Any] | None]]
"""(ctx, event, route name, target name) -> detail recorded with the target hit."""


def check_name(name: Any, what: str) -> str:
    """A config object name: letters, digits, `.`, `_`, `-`; up to 63 characters."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidConfig(
            f"{what} name {name!r} is invalid: use letters, digits, '.', '_' or '-'"
            " (at most 63, starting with a letter or digit)"
        )
    return name


def parse_target(target: Any) -> tuple[str, str]:
    """`queue:db` -> ("queue", "db"); InvalidConfig naming the target otherwise."""
    if not isinstance(target, str) or ":" not in target:
        raise InvalidConfig(
            f"target {target!r} must be 'kind:name' with kind one of {', '.join(TARGET_KINDS)}"
        )
    kind, name = target.split(":", 1)
    if kind not in TARGET_KINDS:
        raise InvalidConfig(
            f"target {target!r}: unknown kind {kind!r} (known: {', '.join(TARGET_KINDS)})"
        )
    check_name(name, f"target {target!r}:")
    return kind, name


def validate_route(spec: Any) -> dict[str, Any]:
    """Check a route's JSON form and return it normalised."""
    if not isinstance(spec, dict):
        raise InvalidConfig("a route must be an object")
    known = {"name", "filter", "targets", "enabled", "description"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InvalidConfig(f"route: unknown field(s) {', '.join(unknown)}")
    name = check_name(spec.get("name"), "route")
    try:
        compiled = compile_filter(spec.get("filter"))
    except OpsbusError as exc:
        raise InvalidConfig(f"route {name}: filter: {exc.detail}", **exc.extra) from None
    targets = spec.get("targets")
    if not isinstance(targets, list) or not targets:
        raise InvalidConfig(f"route {name}: targets must be a non-empty list")
    for target in targets:
        try:
            parse_target(target)
        except InvalidConfig as exc:
            raise InvalidConfig(f"route {name}: {exc.detail}") from None
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidConfig(f"route {name}: enabled must be true or false")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidConfig(f"route {name}: description must be a string")
    return {"name": name, "filter": compiled.spec, "targets": list(dict.fromkeys(targets)),
            "enabled": enabled, "description": description}


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route ready to evaluate."""

    name: str
    filter: Filter
    targets: tuple[tuple[str, str], ...]
    description: str = ""
    implicit: bool = False
    """True for routes derived from another object (a subscription's own filter)."""


def compile_route(spec: dict[str, Any]) -> CompiledRoute:
    return CompiledRoute(
        spec["name"], compile_filter(spec.get("filter")),
        tuple(parse_target(t) for t in spec["targets"]), spec.get("description", ""),
    )


RouteContributor = Callable[[list[ConfigObject]], Iterable[CompiledRoute]]


class Router:
    """The live route table and the handlers that act on each target kind."""

    def __init__(self, hop_limit: int = 8) -> None:
        self.hop_limit = hop_limit
        self.routes: tuple[CompiledRoute, ...] = ()
        self.handlers: dict[str, TargetHandler] = {}
        self.contributors: list[RouteContributor] = []
        self.transforms: list[Callable[[dict[str, Any]], dict[str, Any] | None]] = []

    def register_target(self, kind: str, handler: TargetHandler) -> None:
        """Act on `kind:<name>` targets inside the event's transaction."""
        self.handlers[kind] = handler

    def add_contributor(self, contributor: RouteContributor) -> None:
        """Add implicit routes computed from configuration (e.g. subscription filters)."""
        self.contributors.append(contributor)

    def load(self, objects: list[ConfigObject]) -> None:
        """Recompile the table from the stored configuration; swapped in atomically."""
        table: list[CompiledRoute] = []
        for obj in objects:
            if obj.kind == "routes" and obj.spec.get("enabled", True):
                try:
                    table.append(compile_route(obj.spec))
                except OpsbusError as exc:  # stored before a validator change
                    log.error("route %s skipped: %s", obj.name, exc.detail)
        for contributor in self.contributors:
            table.extend(contributor(objects))
        self.routes = tuple(table)

    def match(self, event: dict[str, Any], routes: Iterable[CompiledRoute] | None = None
              ) -> list[CompiledRoute]:
        """The routes an event matches, without side effects."""
        return [r for r in (self.routes if routes is None else routes) if r.filter.matches(event)]

    async def route(self, ctx: WriteContext, stored: StoredEvent) -> None:
        """Evaluate the table for a just-appended event and act on every target hit."""
        event = stored.event
        hops = event.get("hopcount", 0)
        if isinstance(hops, int) and hops > self.hop_limit:
            await self._loop_detected(ctx, stored)
            return
        matched = self.match(event)
        if not matched:
            return
        stored.routes = tuple(dict.fromkeys(r.name for r in matched))
        await ctx.tx.set_routes(stored.seq, stored.routes)
        records = []
        for route in matched:
            for kind, name in route.targets:
                detail = await self._act(ctx, stored, route.name, kind, name)
                records.append(TargetRecord(stored.seq, route.name, f"{kind}:{name}", detail))
        await ctx.tx.add_targets(records)

    async def _act(
        self, ctx: WriteContext, stored: StoredEvent, route: str, kind: str, name: str
    ) -> dict[str, Any]:
        handler = self.handlers.get(kind)
        if handler is None:
            return {}
        try:
            async with ctx.tx.savepoint():
                return await handler(ctx, stored, route, name) or {}
        except Exception as exc:
            # A failing target must not lose the event: record the failure with it.
            if not isinstance(exc, OpsbusError):
                log.exception("target %s:%s failed for seq %s", kind, name, stored.seq)
            return {"error": str(exc) or type(exc).__name__}

    async def _loop_detected(self, ctx: WriteContext, stored: StoredEvent) -> None:
        from broker.events import new_event

        chain = await causal_chain(ctx, stored)
        event = stored.event
        notice = new_event(
            type=LOOP_TYPE,
            source="opsbus/broker",
            subject=str(event.get("type")),
            data={
                "seq": stored.seq, "id": event["id"], "source": event["source"],
                "type": event["type"], "hopcount": event.get("hopcount"),
                "limit": self.hop_limit, "chain": chain,
            },
            causationid=str(event["id"]),
            correlationid=str(event.get("correlationid") or event["id"]),
            hopcount=0,
        )
        log.warning("loop detected at seq %s (%s): %s", stored.seq, event["type"],
                    " -> ".join("/".join(c["routes"]) or c["type"] for c in chain))
        await ctx.publish(notice)


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
