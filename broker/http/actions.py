"""`/v1/actions/{name}/jobs` and operator quick actions `/v1/todos/{id}/actions/{action}`.
Create, replace and delete of actions go through the generic configuration endpoints."""

from __future__ import annotations

from aiohttp import web

from broker.actions.service import ActionService
from broker.errors import BadRequest
from broker.http.todos import operator_of
from broker.http.util import broker_of, id_param, int_param, json_response, read_object

routes = web.RouteTableDef()


def service_of(request: web.Request) -> ActionService:
    service: ActionService = broker_of(request).actions.service
    return service


@routes.get("/v1/actions/{name}/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    return json_response(await service_of(request).jobs(
        request.match_info["name"], int_param(request, "after", 0),
        int_param(request, "limit", 100, minimum=1, maximum=1000)))


@routes.post("/v1/todos/{id:[0-9]+}/actions/{action}")
async def run_quick_action(request: web.Request) -> web.Response:
    """Run a queue's permitted action on an item: 200 with the result event, or 202 with
    the job when it has not finished within `wait_s` (default 10)."""
    body = await read_object(request)
    wait_s = body.get("wait_s", 10)
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float):
        raise BadRequest("wait_s must be a number of seconds", field="wait_s")
    unknown = sorted(set(body) - {"operator", "params", "wait_s"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)} (known: operator, params,"
                         " wait_s)", field=unknown[0])
    finished, doc = await service_of(request).run_on_todo(
        id_param(request), request.match_info["action"],
        operator_of(request, body), body.get("params"), float(wait_s))
    return json_response(doc, status=200 if finished else 202)
