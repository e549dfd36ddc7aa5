"""`/v1/queues`, `/v1/todos` and `/v1/silences`: the human triage workflow over HTTP."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.errors import BadRequest
from broker.http.util import bool_param, broker_of, id_param, int_param, json_response, read_object
from broker.todos import Todos
from broker.todos.views import item_detail, list_items, queue_info, queue_overview

routes = web.RouteTableDef()


def todos_of(request: web.Request) -> Todos:
    return broker_of(request).todos


def operator_of(request: web.Request, body: dict[str, Any]) -> str:
    """Who makes a change. Today the body's `operator`; this is the one place that will
    derive it from the caller's token once tokens carry identities."""
    operator = body.get("operator")
    if not isinstance(operator, str) or not operator.strip():
        raise BadRequest("operator is required (who is making this change)", field="operator")
    return operator.strip()


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
    """End a silence now; `operator` from the body or the query, else `api`."""
    silences = todos_of(request).silences
    body = await read_object(request, optional=True)
    operator = body.get("operator") or request.query.get("operator") or "api"
    silence = await silences.expire(id_param(request), str(operator))
    return json_response(silences.describe(silence))
