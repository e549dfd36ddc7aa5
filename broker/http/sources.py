"""`/v1/sources/{name}`: foreign payloads (Alertmanager, GitHub, any webhook) in, via plugins."""

from __future__ import annotations

from aiohttp import web

from broker.auth.principal import principal_of
from broker.http.util import broker_of, json_response
from broker.plugin_host.api import SourceRequest

routes = web.RouteTableDef()


@routes.route("*", "/v1/sources/{name}")
@routes.route("*", r"/v1/sources/{name}/{path:[\s\S]*}")
async def receive(request: web.Request) -> web.Response:
    """Hand the request to the source plugin; answer what was published."""
    name = request.match_info["name"]
    source_request = SourceRequest(
        method=request.method, path=request.match_info.get("path", ""),
        headers=request.headers, query=request.query, body=await request.read(), config={},
    )
    principal = principal_of(request)
    publisher = principal.has("publish") and not principal.sources
    results = await broker_of(request).plugins.handle_source(name, source_request,
                                                             api_token=publisher)
    return json_response({"source": name, "events": results})
