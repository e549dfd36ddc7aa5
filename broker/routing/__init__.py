"""Routing: routes as configured, the index that picks candidate routes for an event
(and keeps the bus's own events to the routes that name them), and the router that acts
on target hits inside the writer's transaction."""

from broker.routing.index import (
    BUS_SOURCE_PREFIX,
    BUS_TYPE_PREFIX,
    GUARD_ATTRIBUTES,
    Guard,
    RouteIndex,
    admits,
    guard_of,
    is_bus_event,
    names_bus_events,
)
from broker.routing.router import QuickHandler, RouteContributor, Router, TargetHandler
from broker.routing.routes import (
    NAME,
    ROUTE_FIELDS,
    TARGET_KINDS,
    CompiledRoute,
    check_name,
    check_object,
    compile_route,
    parse_target,
    validate_route,
)

__all__ = [
    "BUS_SOURCE_PREFIX", "BUS_TYPE_PREFIX", "GUARD_ATTRIBUTES", "NAME", "ROUTE_FIELDS",
    "TARGET_KINDS", "CompiledRoute", "Guard", "QuickHandler", "RouteContributor",
    "RouteIndex", "Router", "TargetHandler", "admits", "check_name", "check_object",
    "compile_route", "guard_of", "is_bus_event", "names_bus_events", "parse_target",
    "validate_route",
]
