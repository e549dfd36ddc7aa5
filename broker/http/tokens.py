"""`/v1/tokens` (admin): named API tokens; `/v1/whoami`: the caller's own token."""

from __future__ import annotations

from aiohttp import web

from broker.auth.principal import principal_of
from broker.errors import BadRequest
from broker.http.util import broker_of, json_response, read_object

routes = web.RouteTableDef()


@routes.get("/v1/whoami")
async def whoami(request: web.Request) -> web.Response:
    """Who the caller's token says it is: the operator its todo changes record."""
    principal = principal_of(request)
    return json_response({"name": principal.name, "scopes": sorted(principal.scopes),
                          "sources": list(principal.sources),
                          "auth": broker_of(request).settings.auth})


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    """Named tokens with their scopes (never their secrets)."""
    found = await broker_of(request).tokens.list()
    return json_response({"tokens": [t.to_dict() for t in found]})


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    """Create a named token; the answer holds its secret, shown this once."""
    body = await read_object(request)
    unknown = sorted(set(body) - {"name", "scopes", "sources"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)} (known: name, scopes,"
                         " sources)", field=unknown[0])
    record, secret = await broker_of(request).tokens.create(
        body.get("name"), body.get("scopes"), body.get("sources"),
        by=principal_of(request).name)
    return json_response({**record.to_dict(), "secret": secret}, status=201)


@routes.delete("/v1/tokens/{name}")
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a named token: refused from the next request on, on every replica."""
    await broker_of(request).tokens.revoke(request.match_info["name"],
                                           by=principal_of(request).name)
    return web.Response(status=204)
