"""The aiohttp application factory: routes, middlewares and the broker's lifecycle."""

from __future__ import annotations

import hmac
import importlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from broker.core import Broker
from broker.errors import Unauthorized
from broker.http.config_api import routes_for as config_routes
from broker.http.problems import problems_middleware
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
)
"""Modules exposing `routes` (a RouteTableDef), added in this order; the generic
configuration endpoints (`/v1/{kind}`) come last, so they shadow none of these."""


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def auth_middleware(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not request.path.startswith("/proxy/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
        return await handler(request)

    return check_token


def create_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    """Build the application; the broker starts and stops with it."""
    middlewares: list[Any] = [problems_middleware]
    if settings.token:
        middlewares.append(auth_middleware(settings.token))
    app = web.Application(middlewares=middlewares,
                          client_max_size=settings.max_request_bytes)
    the_broker = broker or Broker(settings)
    app[BROKER] = the_broker

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await the_broker.start()
        yield
        await the_broker.stop()

    async def end_streams(app: web.Application) -> None:
        # Streams and long-polls end first so graceful shutdown need not wait for them.
        the_broker.hub.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)
    for name in ROUTE_MODULES:
        app.router.add_routes(importlib.import_module(name).routes)
    app.router.add_routes(config_routes(the_broker.config.kinds))
    return app
