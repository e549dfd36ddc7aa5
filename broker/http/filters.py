"""`/v1/filters/evaluate`: check a filter against an event (the console's live check)."""

from __future__ import annotations

from aiohttp import web

from broker.filters import evaluate_request
from broker.http.util import json_response, read_object

routes = web.RouteTableDef()


@routes.post("/v1/filters/evaluate")
async def evaluate(request: web.Request) -> web.Response:
    """Evaluate a CESQL expression or filter against an event: {value, error}."""
    return json_response(evaluate_request(await read_object(request)))
