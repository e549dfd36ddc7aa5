"""`GET /v1/catalog`: per source and type, when it was seen, its rate and usual gap, and
the inferred shape of its data."""

from __future__ import annotations

from aiohttp import web

from broker.errors import NotFound
from broker.http.util import broker_of, json_response

routes = web.RouteTableDef()


@routes.get("/v1/catalog")
async def list_catalog(request: web.Request) -> web.Response:
    """Every catalogued (source, type), without shapes."""
    catalog = broker_of(request).catalog
    return json_response({"enabled": catalog.settings.enabled, "entries": catalog.entries()})


# A source may hold slashes (`github.com/org/repo`); a type does not: the last segment is
# the type, everything before it the source.
@routes.get("/v1/catalog/{source:.+}/{type:[^/]+}")
async def get_catalog_entry(request: web.Request) -> web.Response:
    """One (source, type) with the shape of its data."""
    source, type_ = request.match_info["source"], request.match_info["type"]
    found = broker_of(request).catalog.entry(source, type_)
    if found is None:
        raise NotFound(f"the catalog has no events of type {type_!r} from source {source!r}")
    return json_response(found)
