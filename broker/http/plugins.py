"""`GET /v1/plugins`: what is loaded, in which version, what it provides, and load errors."""

from __future__ import annotations

from aiohttp import web

from broker.http.util import broker_of, json_response

routes = web.RouteTableDef()


@routes.get("/v1/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    return json_response(broker_of(request).plugins.describe())
