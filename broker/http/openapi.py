"""`/v1/openapi.json`: the OpenAPI 3.1 description of the routes the app serves."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import web

from broker import __version__
from broker.http.openapi_ops import ANY_METHOD, JSON, OPERATIONS, Op
from broker.http.openapi_schemas import SCHEMAS, ref
from broker.http.util import BROKER, json_response

routes = web.RouteTableDef()

PROBLEM = {"content": {"application/problem+json": {"schema": ref("Problem")}}}
ERRORS = {"400": "The request is malformed; the problem names the field",
          "401": "Missing or wrong credentials", "403": "The token lacks the scope",
          "404": "No such object", "409": "Conflicts with the current state",
          "413": "Over the size limits", "415": "Unsupported content type",
          "422": "Understood but refused (a source's payload, an invalid derived event)"}
GROUP = re.compile(r"\(\?P<(\w+)>([A-Za-z0-9_|-]+)\)")
"""A named group of the route's regex that admits only literals: `(?P<verb>ack|nack)`."""


class Undocumented(Exception):
    """A served route has no entry in the operation table."""


def _expand(info: Mapping[str, Any]) -> Iterator[str]:
    """OpenAPI paths of a route: `{verb:a|b}` is one path per literal; other regexes are
    dropped (`{path:[\\s\\S]*}` -> `{path}`)."""
    paths = [info.get("path") or info.get("formatter") or ""]
    pattern = info.get("pattern")
    for name, literals in GROUP.findall(pattern.pattern if pattern is not None else ""):
        if name == "kind":
            continue  # the configuration kinds: one path per kind, named below
        paths = [p.replace("{" + name + "}", literal) for p in paths
                 for literal in literals.split("|")]
    yield from paths


def served(app: web.Application) -> Iterator[tuple[str, str, str, Op, Any]]:
    """(method, OpenAPI path, table key path, operation, handler) for every route, in
    the router's order; a (method, path) an earlier route serves is not repeated."""
    kinds = app[BROKER].config.kinds if BROKER in app else {}
    seen: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        raw = info.get("path") or info.get("formatter")
        if not raw or route.method == "HEAD":
            continue
        for key_path in _expand(info):
            methods = ANY_METHOD.get(key_path, ()) if route.method == "*" else (route.method,)
            if route.method == "*" and not methods:
                raise Undocumented(f"{raw} takes any method; name its methods in ANY_METHOD")
            for method in methods:
                op = OPERATIONS.get((method, key_path))
                if op is None:
                    raise Undocumented(f"{method} {key_path} ({route.handler.__module__}."
                                       f"{route.handler.__name__}) is not in OPERATIONS")
                paths = ([(key_path.replace("{kind}", k), k) for k in sorted(kinds)]
                         if "{kind}" in key_path else [(key_path, "")])
                for path, kind in paths:
                    if (method, path) in seen:
                        continue
                    seen.add((method, path))
                    named = op
                    if kind:
                        singular = kinds[kind].singular.replace(" ", "_")
                        named = Op(**{**op.__dict__, "id": op.id.format(kind=kind,
                                                                        singular=singular)})
                    yield method, path, key_path, named, route.handler


def _operation(method: str, path: str, op: Op, handler: Any) -> dict[str, Any]:
    doc = inspect.getdoc(handler) or ""
    summary = op.summary or (doc.splitlines()[0] if doc else op.id.replace("_", " "))
    content_type = op.extra.get("content", JSON)
    responses: dict[str, Any] = {}
    for status, (description, schema) in op.ok.items():
        answer: dict[str, Any] = {"description": description}
        if schema is not None:
            answer["content"] = {content_type: {"schema": schema}}
        elif status != "204":
            answer["content"] = {content_type: {"schema": {"type": "string"}}}
        responses[status] = answer
    params = re.findall(r"\{(\w+)\}", path)
    errors = {"404"} if params else set()
    if op.query or op.body or params:
        errors.add("400")
    if op.auth != "none":
        errors.add("401")
    if op.auth == "bearer":
        errors.add("403")
    if op.body and method in ("POST", "PUT"):
        errors.add("413")
    if op.tag == "sources":
        errors |= {"415", "422"}
    if method in ("POST", "PUT") and op.tag == "config":
        errors.add("409")
    if op.id == "publish_events":
        errors |= {"409", "415", "422"}
    for status in sorted(errors):
        responses[status] = {"description": ERRORS[status], **PROBLEM}
    responses["default"] = {"description": "An RFC 9457 problem document", **PROBLEM}
    operation: dict[str, Any] = {"operationId": op.id, "summary": summary, "tags": [op.tag],
                                 "responses": responses}
    if op.auth != "bearer":
        operation["security"] = []
    elif op.tag == "proxy":
        operation["description"] = ("Needs a token with the `read` scope unless the mount is"
                                    " configured `public = true`.")
    needed = op.needs(method)
    if needed is not None:
        operation["x-opsbus-scope"] = needed  # the token scope the call needs
    if op.auth == "source":
        operation["description"] = (
            "Not the API token: each source authenticates requests by its own means (a"
            " signature such as GitHub's X-Hub-Signature-256, or a per-source secret),"
            " configured in `[plugins.<name>]`.")
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in params]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema,
                    **({"description": text} if text else {})}
                   for name, schema, text in op.query]
    if parameters:
        operation["parameters"] = parameters
    if op.body:
        operation["requestBody"] = {"required": op.body_required, "content": {
            media: {"schema": schema} for media, schema in op.body.items()}}
    return operation


def describe(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of every route `app` serves."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, _key, op, handler in served(app):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, handler)
    return {
        "openapi": "3.1.0",
        "info": {"title": "opsbus", "version": __version__,
                 "description": "An event bus for operations teams: CloudEvents in, todo"
                                " items, webhooks and API actions out."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": t} for t in ("events", "sources", "filters", "todos", "delivery",
                                       "config", "proxy", "catalog", "operations")],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from `opsbus token`"
                                                          " or <data_dir>/admin.token"}},
        },
    }


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """This API's OpenAPI description."""
    return json_response(describe(request.app))
