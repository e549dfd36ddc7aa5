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
from broker.lineage import over_hop_limit
from broker.store.records import ConfigObject, StoredEvent, TargetRecord

if TYPE_CHECKING:
    from broker.bus import WriteContext

log = logging.getLogger(__name__)

TARGET_KINDS = ("queue", "subscription", "action", "plugin")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

TargetHandler = Callable[["WriteContext", StoredEvent, str, str], Awaitable[dict[str, Any] | None]]
"""(ctx, event, route name, target name) -> detail recorded with the target hit."""


def check_name(name: Any, what: str, field: str = "name") -> str:
    """A config object name: letters, digits, `.`, `_`, `-`; up to 63 characters."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidConfig(
            f"{what} name {name!r} is invalid: use letters, digits, '.', '_' or '-'"
            " (at most 63, starting with a letter or digit)", field=field,
        )
    return name


def check_object(spec: Any, what: str, known: Iterable[str]) -> str:
    """The shared checks of a configuration object (a table with only `known` members
    and a valid `name`); returns the name. Errors name the offending `field`."""
    if not isinstance(spec, dict):
        raise InvalidConfig(f"a {what} must be a JSON object (a TOML table)")
    fields = list(known)
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise InvalidConfig(f"{what}: unknown field(s) {', '.join(unknown)}"
                            f" (known: {', '.join(fields)})", field=unknown[0])
    return check_name(spec.get("name"), what)


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


ROUTE_FIELDS = ("name", "filter", "targets", "enabled", "description")


def validate_route(spec: Any) -> dict[str, Any]:
    """Check a route's JSON form and return it normalised. Every InvalidConfig carries
    `field` (the offending member, e.g. `targets[1]`) and, for CESQL, `position`."""
    name = check_object(spec, "route", ROUTE_FIELDS)
    # A missing filter would silently match everything, the broker's own todo and
    # delivery events included; match-all must be asked for explicitly with `{}`.
    if "filter" not in spec:
        raise InvalidConfig(f"route {name}: filter is required (use {{}} to match every event)",
                            field="filter")
    try:
        compiled = compile_filter(spec["filter"], strict=True)
    except OpsbusError as exc:
        raise InvalidConfig(f"route {name}: {exc.detail}",
                            **{"field": "filter", **exc.extra}) from None
    targets = spec.get("targets")
    if not isinstance(targets, list) or not targets:
        raise InvalidConfig(f"route {name}: targets must be a non-empty list of 'kind:name'",
                            field="targets")
    for index, target in enumerate(targets):
        try:
            parse_target(target)
        except InvalidConfig as exc:
            raise InvalidConfig(f"route {name}: targets[{index}]: {exc.detail}",
                                field=f"targets[{index}]") from None
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidConfig(f"route {name}: enabled must be true or false", field="enabled")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidConfig(f"route {name}: description must be a string", field="description")
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
    """A validated route spec compiled for evaluation."""
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
        self._index: RouteIndex | None = None
        self._writers: set[str] = set()

    def register_target(self, kind: str, handler: TargetHandler, *,
                        writes: bool = True) -> None:
        """Act on `kind:<name>` targets inside the event's transaction. A handler that
        `writes` to the store runs in its own savepoint, so its failure undoes only its
        own work; one that only schedules after-commit work needs none (the savepoint
        would cost two statements per target hit)."""
        self.handlers[kind] = handler
        if writes:
            self._writers.add(kind)
        else:
            self._writers.discard(kind)

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

    async def route(self, ctx: WriteContext, stored: StoredEvent) -> None:
        """Evaluate the table for a just-appended event and act on every target hit."""
        event = stored.event
        if self.looping(event):
            await ctx.loop_notice(stored, "hop_limit", self.hop_limit)
            return
        matched = self.match(event)
        if not matched:
            return
        stored.routes = tuple(dict.fromkeys(r.name for r in matched))
        records = ctx.pending_targets
        for route in matched:
            for kind, name in route.targets:
                detail = await self._act(ctx, stored, route.name, kind, name)
                records.append(TargetRecord(stored.seq, route.name, f"{kind}:{name}", detail))
        # Route names and target hits are written once per transaction (ctx.flush).
        ctx.pending_routes.append(stored)

    async def _act(
        self, ctx: WriteContext, stored: StoredEvent, route: str, kind: str, name: str
    ) -> dict[str, Any]:
        handler = self.handlers.get(kind)
        if handler is None:
            # Recorded, so that `GET /v1/events/{seq}` shows why nothing happened.
            return {"skipped": f"no handler for {kind} targets is loaded"}
        mark = ctx.mark()
        try:
            if kind not in self._writers:
                return await handler(ctx, stored, route, name) or {}
            async with ctx.tx.savepoint():
                return await handler(ctx, stored, route, name) or {}
        except Exception as exc:
            ctx.undo(mark)  # events it published were rolled back with the savepoint
            # A failing target must not lose the event: record the failure with it.
            if not isinstance(exc, OpsbusError):
                log.exception("target %s:%s failed for seq %s", kind, name, stored.seq)
            return {"error": str(exc) or type(exc).__name__}


# -- the route index ---------------------------------------------------------------------
# Most routes name the event types (or sources) they are about. Evaluating every filter
# for every event costs ~0.25 µs per route and dominates ingest with hundreds of routes,
# so each route gets a *guard* derived from its filter: a condition on `type`, `source`
# or `subject` that every matching event must meet. Guards are looked up in dicts; only
# the candidates they select (plus the unguarded routes) run their full filter.

GUARD_ATTRIBUTES = ("type", "source", "subject")
"""String attributes a guard may test (validated events always hold strings there)."""


@dataclass(frozen=True, slots=True)
class Guard:
    """A necessary condition: `attribute` equals one of `exact` or starts with a prefix."""

    attribute: str
    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()

    def union(self, other: Guard) -> Guard | None:
        if other.attribute != self.attribute:
            return None
        return Guard(self.attribute, self.exact | other.exact, self.prefixes | other.prefixes)

    @property
    def rank(self) -> tuple[bool, int, int]:
        """Lower is more selective: exact values before prefixes, type before source."""
        return (bool(self.prefixes), GUARD_ATTRIBUTES.index(self.attribute),
                len(self.exact) + len(self.prefixes))


def guard_of(spec: Any, attributes: tuple[str, ...] = GUARD_ATTRIBUTES) -> Guard | None:
    """The guard implied by a normalised filter spec, or None when there is none; only
    conditions on `attributes` are considered."""
    if not isinstance(spec, dict) or len(spec) != 1:
        return None
    ((dialect, body),) = spec.items()
    if dialect in ("exact", "prefix"):
        for attribute in attributes:
            if isinstance(body.get(attribute), str):
                value = frozenset([body[attribute]])
                return (Guard(attribute, exact=value) if dialect == "exact"
                        else Guard(attribute, prefixes=value))
        return None
    if dialect == "all":
        return _best([guard_of(child, attributes) for child in body])
    if dialect == "any":
        return _union([guard_of(child, attributes) for child in body])
    if dialect == "sql" and isinstance(body, str):
        from broker.filters.parser import parse

        try:
            return _sql_guard(parse(body), attributes)
        except Exception:  # compiled fine already; no guard is always safe
            return None
    return None  # suffix and not imply nothing usable


def _best(guards: list[Guard | None]) -> Guard | None:
    found = [g for g in guards if g is not None]
    return min(found, key=lambda g: g.rank) if found else None


def _union(guards: list[Guard | None]) -> Guard | None:
    if not guards or any(g is None for g in guards):
        return None
    merged: Guard | None = guards[0]
    for guard in guards[1:]:
        merged = merged.union(guard) if merged is not None and guard is not None else None
    return merged


def _sql_guard(node: Any, attributes: tuple[str, ...] = GUARD_ATTRIBUTES) -> Guard | None:
    from broker.filters import nodes

    def attribute(operand: Any) -> str | None:
        if isinstance(operand, nodes.Attribute) and operand.name in attributes:
            return str(operand.name)
        return None

    def string(operand: Any) -> str | None:
        if isinstance(operand, nodes.Literal) and isinstance(operand.value, str):
            return operand.value
        return None

    # AND fails when any operand is false (or errs), so any operand's guard holds;
    # OR needs a guard on every operand. XOR and NOT give nothing.
    if isinstance(node, nodes.Logic):
        parts = [_sql_guard(operand, attributes) for operand in node.operands]
        return _best(parts) if node.op == "AND" else _union(parts) if node.op == "OR" else None
    if isinstance(node, nodes.Binary) and node.op == "=":
        for left, right in ((node.left, node.right), (node.right, node.left)):
            name, value = attribute(left), string(right)
            if name and value is not None:
                return Guard(name, exact=frozenset([value]))
        return None
    if isinstance(node, nodes.In) and not node.negated:
        name = attribute(node.operand)
        values = [string(item) for item in node.items]
        if name and values and all(v is not None for v in values):
            return Guard(name, exact=frozenset(v for v in values if v is not None))
        return None
    if isinstance(node, nodes.Like) and not node.negated:
        name = attribute(node.operand)
        if not name:
            return None
        # The literal text before the first wildcard or escape is a required prefix.
        cut = min((i for i in (node.pattern.find(c) for c in "%_\\") if i >= 0),
                  default=-1)
        if cut < 0:
            return Guard(name, exact=frozenset([node.pattern]))
        return Guard(name, prefixes=frozenset([node.pattern[:cut]])) if cut else None
    return None


# -- the bus's own events ----------------------------------------------------------------
# The broker publishes events about its own work (todo changes, dead letters, action
# results, breaker changes, loop notices). Routed like any event, a match-all route or
# subscription would feed them back into the work that produced them: a webhook that
# fails dead-letters, the dead letter is delivered to the same webhook, fails, ... So a
# route sees the bus's own events only when its filter names them: its guard on `type`
# or `source` (the necessary condition the index derives) selects an `opsbus` value or
# prefix, e.g. `{ prefix = { type = "opsbus.todo." } }` or `source = 'opsbus/delivery'`.

BUS_TYPE_PREFIX = "opsbus."
BUS_SOURCE_PREFIX = "opsbus/"
BUS_NAME = "opsbus"
"""A guard value naming the bus's own events starts with this."""


def is_bus_event(event: dict[str, Any]) -> bool:
    """True for the bus's own events: type `opsbus.*` or source `opsbus/*`."""
    kind, source = event.get("type"), event.get("source")
    return ((isinstance(kind, str) and kind.startswith(BUS_TYPE_PREFIX))
            or (isinstance(source, str) and source.startswith(BUS_SOURCE_PREFIX)))


def names_bus_events(spec: Any) -> bool:
    """True when a filter names the bus's own events: the guard it implies on `type`,
    or else on `source`, selects an `opsbus` value or prefix."""
    for attribute in ("type", "source"):
        guard = guard_of(spec, (attribute,))
        if guard is not None and any(value.startswith(BUS_NAME)
                                     for value in (*guard.exact, *guard.prefixes)):
            return True
    return False


def admits(route: CompiledRoute, event: dict[str, Any]) -> bool:
    """Whether `route` may see `event` at all (its filter decides the rest)."""
    return not is_bus_event(event) or names_bus_events(route.filter.spec)


class RouteIndex:
    """Selects, for an event, the routes whose guard it meets (in table order); for the
    bus's own events only the routes that name them."""

    def __init__(self, routes: tuple[CompiledRoute, ...]) -> None:
        self.routes = routes
        self.always: list[int] = []
        self.exact: dict[str, dict[str, list[int]]] = {}
        self.prefix: dict[str, dict[int, dict[str, list[int]]]] = {}
        self._bus_order = [i for i, route in enumerate(routes)
                           if names_bus_events(route.filter.spec)]
        """Positions of the routes that name the bus's own events."""
        for position, route in enumerate(routes):
            guard = guard_of(route.filter.spec)
            if guard is None:
                self.always.append(position)
                continue
            for value in guard.exact:
                self.exact.setdefault(guard.attribute, {}).setdefault(value, []).append(position)
            for prefix in guard.prefixes:
                by_length = self.prefix.setdefault(guard.attribute, {})
                by_length.setdefault(len(prefix), {}).setdefault(prefix, []).append(position)
        self.attributes = tuple(a for a in GUARD_ATTRIBUTES if a in self.exact or a in self.prefix)

    def match(self, event: dict[str, Any]) -> list[CompiledRoute]:
        """The routes `event` matches, in table order: the one routing decision, used by
        the engine and by every dry run."""
        return [r for r in self.candidates(event) if r.filter.matches(event)]

    def candidates(self, event: dict[str, Any]) -> list[CompiledRoute]:
        if is_bus_event(event):
            return [self.routes[i] for i in self._bus_order]  # few; their filters decide
        picked: list[int] = []
        for attribute in self.attributes:
            value = event.get(attribute)
            if not isinstance(value, str):
                continue
            exact = self.exact.get(attribute)
            if exact is not None:
                picked.extend(exact.get(value, ()))
            for length, table in self.prefix.get(attribute, {}).items():
                picked.extend(table.get(value[:length], ()))
        if not picked:
            return [self.routes[i] for i in self.always]
        # A route listed under several values (an IN list) must still come once.
        return [self.routes[i] for i in sorted({*picked, *self.always})]
