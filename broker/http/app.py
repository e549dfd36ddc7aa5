"""The aiohttp application factory: routes, middlewares and the broker's lifecycle."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from broker.core import Broker
from broker.http.auth import Guard
from broker.http.bounds import BOUNDS, HttpBounds
from broker.http.config_api import routes_for as config_routes
from broker.http.util import BROKER
from broker.settings import Settings

ROUTE_MODULES = (
    "broker.http.health",
    "broker.http.events",
    "broker.http.stream",
    "broker.http.filters",
    "broker.http.todos",
    "broker.http.subscriptions",
    "broker.http.actions",
    "broker.http.sources",
    "broker.http.plugins",
    "broker.http.catalog",
    "broker.http.proxy",
    "broker.http.route_preview",
    "broker.http.openapi",
    "broker.http.clock",
    "broker.http.admin",
    "broker.http.tokens",
)
"""Modules exposing `routes` (a RouteTableDef), added in this order; the generic
configuration endpoints (`/v1/{kind}`) come last, so they shadow none of these."""


def register_bound_metrics(broker: Broker, bounds: HttpBounds) -> None:
    """What the HTTP edge's bounds hold and refuse, read at each scrape."""
    streams, metrics = bounds.streams, broker.metrics
    metrics.sampled("opsbus_streams_open", "Open streams and waiting pull receives"
                    " (max_streams).", "gauge", lambda: streams.open)
    metrics.sampled("opsbus_streams_refused_total", "Streams and pull receives refused at"
                    " max_streams or max_streams_per_principal.", "counter",
                    lambda: streams.refused)
    metrics.sampled("opsbus_streams_behind", "Streams whose live events wait for the"
                    " client to read (dropped past stream_buffer_bytes).", "gauge",
                    lambda: streams.behind)
    metrics.sampled("opsbus_http_connections", "Open HTTP connections (max_connections).",
                    "gauge", lambda: bounds.gate.open if bounds.gate else 0)
    metrics.sampled("opsbus_connections_refused_total", "Connections answered 503 at"
                    " max_connections.", "counter",
                    lambda: bounds.gate.refused if bounds.gate else 0)


def create_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    """Build the application; the broker starts and stops with it."""
    the_broker = broker or Broker(settings)
    app = web.Application(client_max_size=settings.max_request_bytes)
    app[BROKER] = the_broker
    app[BOUNDS] = bounds = HttpBounds(settings.max_streams, settings.max_streams_per_principal)
    register_bound_metrics(the_broker, bounds)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await the_broker.start()
        yield
        await the_broker.stop()

    async def end_streams(app: web.Application) -> None:
        # Streams and long-polls end first so graceful shutdown need not wait for them.
        the_broker.hub.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)
    # No middlewares: every handler is wrapped in the guard instead (see Guard), and
    # what no route matches lands on its resource for unmatched requests, added last.
    guard = Guard(settings, lambda: the_broker.tokens, the_broker.proxy.is_public)
    for name in ROUTE_MODULES:
        app.router.add_routes(guarded(importlib.import_module(name).routes, guard))
    app.router.add_routes(guarded(config_routes(the_broker.config.kinds), guard))
    app.router.register_resource(guard.unmatched())
    return app


def guarded(routes: Iterable[web.AbstractRouteDef], guard: Guard) -> list[web.RouteDef]:
    """The routes with their handlers wrapped in the guard."""
    wrapped = []
    for route in routes:
        if not isinstance(route, web.RouteDef):
            raise TypeError(f"{route!r}: only handler routes are served")
        wrapped.append(web.RouteDef(route.method, route.path, guard.wrap(route.handler),
                                    route.kwargs))
    return wrapped
