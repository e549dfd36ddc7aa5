"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from broker.errors import Unavailable
from broker.http.util import broker_of, json_response

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
    broker = broker_of(request)
    lines = [
        "# HELP opsbus_events_committed_total Events committed since start.",
        "# TYPE opsbus_events_committed_total counter",
        f"opsbus_events_committed_total {broker.bus.events_committed}",
        "# HELP opsbus_commits_total Write transactions committed since start.",
        "# TYPE opsbus_commits_total counter",
        f"opsbus_commits_total {broker.bus.commits}",
        "# HELP opsbus_last_seq Highest committed seq.",
        "# TYPE opsbus_last_seq gauge",
        f"opsbus_last_seq {broker.hub.head}",
        "# HELP opsbus_stream_subscribers Live stream and long-poll readers.",
        "# TYPE opsbus_stream_subscribers gauge",
        f"opsbus_stream_subscribers {broker.hub.subscriber_count}",
        "# HELP opsbus_stream_overflows_total Readers that fell behind and caught up"
        " from the store.",
        "# TYPE opsbus_stream_overflows_total counter",
        f"opsbus_stream_overflows_total {broker.hub.overflows}",
        "# HELP opsbus_routes Routes in the live table.",
        "# TYPE opsbus_routes gauge",
        f"opsbus_routes {len(broker.router.routes)}",
    ]
    for name, value in broker.metrics().items():
        lines.append(f"{name} {value}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain",
                        charset="utf-8", headers={"X-Content-Type": "version=0.0.4"})
