"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import shutil

from aiohttp import web

from broker.bus.writer import RETRY_AFTER_S
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
    """Readiness: the store is open, the writer runs, its last commit did not fail just
    now, and the disk holding an embedded store has room."""
    broker = broker_of(request)
    if not broker.ready:
        raise Unavailable("the broker is starting or stopping")
    failing = broker.bus.health.unready()
    if failing is not None:
        raise Unavailable(f"not ready: {failing}", retry_after=RETRY_AFTER_S)
    settings = broker.settings
    if settings.store == "sqlite":
        free = shutil.disk_usage(settings.data_dir).free
        # Room for at least two of the largest requests (the log and its WAL).
        if free < 2 * settings.max_request_bytes:
            raise Unavailable(f"not ready: {free} bytes free on the disk holding"
                              f" {settings.data_dir}", retry_after=RETRY_AFTER_S)
    return json_response({"status": "ready", "last_seq": broker.hub.head})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics."""
    body = await broker_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
