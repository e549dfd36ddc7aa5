"""`/v1/queues`, `/v1/todos` and `/v1/silences`: the human triage workflow over HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from broker.auth.model import RESERVED_NAMES
from broker.auth.principal import principal_of
from broker.errors import BadRequest, Forbidden
from broker.http.auth import missing_scope
from broker.http.util import bool_param, broker_of, id_param, int_param, json_response, read_object
from broker.todos import Todos
from broker.todos.views import item_detail, list_items, queue_info, queue_overview

routes = web.RouteTableDef()


def todos_of(request: web.Request) -> Todos:
    return broker_of(request).todos


def operator_of(request: web.Request, body: Mapping[str, Any]) -> str:
    """Who makes a change: the caller's token's name. A body `operator` naming anyone
    else is refused (403), except from an admin token, which may record the person it
    acts for (an admin could create a token of that name anyway): the local CLI and
    console on the admin token name the login user that way."""
    principal = principal_of(request)
    given = body.get("operator")
    if given is None:
        return principal.name
    if not isinstance(given, str) or not given.strip():
        raise BadRequest("operator must be a non-empty string (or left out: the token's"
                         " name is the operator)", field="operator")
    named = given.strip()
    if named == principal.name:
        return named
    if not principal.has("admin"):
        raise Forbidden(f"the operator is the token's name ({principal.name!r}); this request"
                        f" names {named!r}: leave operator out, or use {named}'s own token",
                        field="operator", token=principal.name)
    if named in RESERVED_NAMES or named.startswith("opsbus"):
        raise Forbidden(f"operator {named!r} is reserved for the broker itself",
                        field="operator")
    return named


def require_force(request: web.Request, body: Mapping[str, Any]) -> None:
    """`force` (releasing another operator's claim) needs the `force` scope."""
    principal = principal_of(request)
    if body.get("force") is True and not principal.has("force"):
        raise Forbidden(missing_scope(principal, "force") + " (force: true acts on another"
                        " operator's claim)", scope="force", token=principal.name)


@routes.get("/v1/queues")
async def list_queues(request: web.Request) -> web.Response:
    return json_response({"queues": await queue_overview(todos_of(request).views)})


@routes.get("/v1/queues/{name}")
async def get_queue(request: web.Request) -> web.Response:
    return json_response(await queue_info(todos_of(request).views, request.match_info["name"]))


@routes.get("/v1/todos")
async def list_todos(request: web.Request) -> web.Response:
    q = request.query
    page = await list_items(
        todos_of(request).views, queue=q.get("queue") or None,
        state=q.get("state") or None, owner=q.get("owner") or None,
        limit=int_param(request, "limit", 100, minimum=1, maximum=1000),
        after=q.get("after") or None)
    return json_response(page)


@routes.get("/v1/todos/{id:[0-9]+}")
async def get_todo(request: web.Request) -> web.Response:
    return json_response(await item_detail(todos_of(request).views, id_param(request)))


@routes.post("/v1/todos/{id:[0-9]+}/{op}")
async def operate(request: web.Request) -> web.Response:
    body = await read_object(request, optional=True)
    require_force(request, body)
    item, published = await todos_of(request).service.operate(
        id_param(request), request.match_info["op"], operator_of(request, body),
        body)
    answer: dict[str, Any] = {"item": item.to_dict()}
    if published is not None:
        answer["event"] = published
    return json_response(answer)


@routes.post("/v1/silences")
async def add_silence(request: web.Request) -> web.Response:
    silences = todos_of(request).silences
    body = await read_object(request)
    silence = await silences.create(body, operator_of(request, body))
    return json_response(silences.describe(silence), status=201)


@routes.get("/v1/silences")
async def list_silences(request: web.Request) -> web.Response:
    silences = todos_of(request).silences
    everything = bool_param(request, "all")
    found = await silences.list(include_expired=everything)
    return json_response({"silences": [silences.describe(s) for s in found]})


@routes.get("/v1/silences/{id:[0-9]+}")
async def get_silence(request: web.Request) -> web.Response:
    silences = todos_of(request).silences
    return json_response(silences.describe(await silences.get(id_param(request))))


@routes.delete("/v1/silences/{id:[0-9]+}")
async def expire_silence(request: web.Request) -> web.Response:
    """End a silence now, as the caller's token (see `operator_of`)."""
    silences = todos_of(request).silences
    body = await read_object(request, optional=True)
    if "operator" not in body and "operator" in request.query:
        body = {**body, "operator": request.query["operator"]}
    silence = await silences.expire(id_param(request), operator_of(request, body))
    return json_response(silences.describe(silence))
