"""The route index: guards derived from filters select the candidate routes for an
event, and the rule that the bus's own events reach only the routes that name them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.routing.routes import CompiledRoute

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


_Decided = tuple[list[CompiledRoute] | None, list[tuple[CompiledRoute, bool]]]
"""An index memo entry: the matched routes when their guards decide them all (shared by
every event with those values; else None), and the candidates, each with whether its
guard decides it."""


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
        self._only = self.attributes[0] if len(self.attributes) == 1 else None
        self._decided = frozenset(i for i, route in enumerate(routes)
                                  if _guard_is_filter(route.filter.spec))
        """Positions of the routes whose filter is its guard: selected means matched."""
        self._memo: dict[tuple[Any, ...], _Decided] = {}
        """Guard-attribute values -> the matched routes when the guards decide them all
        (else None), and the candidates with whether each is decided."""

    def match(self, event: dict[str, Any]) -> list[CompiledRoute]:
        """The routes `event` matches, in table order: the one routing decision, used by
        the engine and by every dry run. The list may be shared: read it, never change
        it."""
        if is_bus_event(event):
            return [r for r in self.candidates(event) if r.filter.matches(event)]
        # The candidates depend on the guard attributes' values alone, and most events
        # repeat a few types and sources: remembered per value, so that an event whose
        # routes are all decided by their guards runs no filter and no lookup beyond one.
        # The key of one guard attribute (`type`, the common one) spelled out: a
        # comprehension is a function call of its own, once per event routed.
        key = ((event.get(self._only),) if self._only is not None
               else tuple([event.get(attribute) for attribute in self.attributes]))
        try:
            found = self._memo.get(key)
        except TypeError:  # an unhashable value (not a validated event): no memo
            return [r for r in self.candidates(event) if r.filter.matches(event)]
        if found is None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            found = self._memo[key] = self._decide(event)
        routes, candidates = found
        if routes is not None:  # every candidate decided by its guard
            return routes
        return [route for route, decided in candidates
                if decided or route.filter.matches(event)]

    def _decide(self, event: dict[str, Any]) -> _Decided:
        positions = self._positions(event)
        candidates = [(self.routes[i], i in self._decided) for i in positions]
        every = all(decided for _, decided in candidates)
        return ([route for route, _ in candidates] if every else None), candidates

    def candidates(self, event: dict[str, Any]) -> list[CompiledRoute]:
        if is_bus_event(event):
            return [self.routes[i] for i in self._bus_order]  # few; their filters decide
        return [self.routes[i] for i in self._positions(event)]

    def _positions(self, event: dict[str, Any]) -> list[int]:
        """Table positions of the routes whose guard `event` meets, and the unguarded."""
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
            return self.always
        # A route listed under several values (an IN list) must still come once.
        return sorted({*picked, *self.always})


MEMO_SIZE = 4096
"""Distinct guard-attribute values remembered per route table (then forgotten at once):
bounded whatever the events' subjects or sources."""


def _guard_is_filter(spec: Any) -> bool:
    """True when a filter is a single exact or prefix test of a guard attribute: an
    event its guard selects matches it."""
    if not isinstance(spec, dict) or len(spec) != 1:
        return False
    ((dialect, body),) = spec.items()
    return (dialect in ("exact", "prefix") and isinstance(body, dict) and len(body) == 1
            and all(name in GUARD_ATTRIBUTES and isinstance(value, str) and value
                    for name, value in body.items()))
