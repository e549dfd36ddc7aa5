"""`/v1/openapi.json`: an OpenAPI 3.1 description built from the registered routes."""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from broker import __version__
from broker.http.util import json_response

routes = web.RouteTableDef()

PROBLEM_SCHEMA = {"schema": {"$ref": "#/components/schemas/Problem"}}
PROBLEM = {"description": "An RFC 9457 problem document",
           "content": {"application/problem+json": PROBLEM_SCHEMA}}


def describe(app: web.Application) -> dict[str, Any]:
    """Paths, methods and summaries (the handlers' docstrings) of every API route."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method == "HEAD":
            continue
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
        doc = inspect.getdoc(route.handler) or route.handler.__name__.replace("_", " ")
        operation: dict[str, Any] = {
            "summary": doc.splitlines()[0],
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "responses": {"200": {"description": "Success"}, "default": PROBLEM},
        }
        params = re.findall(r"\{(\w+)\}", path)
        if params:
            operation["parameters"] = [{"name": p, "in": "path", "required": True,
                                        "schema": {"type": "string"}} for p in params]
        method = "get" if route.method == "*" else route.method.lower()
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "opsbus", "version": __version__,
                 "description": "An event bus for operations teams."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {"Problem": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                           "status": {"type": "integer"}, "detail": {"type": "string"},
                           "instance": {"type": "string"}},
        }}},
    }


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """This API's OpenAPI description."""
    return json_response(describe(request.app))
