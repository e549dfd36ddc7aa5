"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from broker.errors import Unavailable
from broker.http.util import broker_of, json_response
from broker.metrics import CONTENT_TYPE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store is open and the writer runs."""
    broker = broker_of(request)
    if not broker.ready:
        raise Unavailable("the broker is starting or stopping")
    return json_response({"status": "ready", "last_seq": broker.hub.head})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics."""
    body = await broker_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
