"""`/v1/subscriptions/...`: status, deliveries, operator controls and the pull API.
Create, replace and delete go through the generic configuration endpoints."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from aiohttp import web

from broker.auth.principal import principal_of
from broker.delivery.service import DeliveryService
from broker.errors import BadRequest
from broker.http.bounds import bounds_of
from broker.http.todos import operator_of
from broker.http.util import broker_of, id_param, int_param, json_response, read_object
from broker.timeutil import parse_duration

routes = web.RouteTableDef()

PULL_VERBS = ("ack", "release", "reject", "renew")


def service_of(request: web.Request) -> DeliveryService:
    service: DeliveryService = broker_of(request).delivery.service
    return service


def seconds(body: dict[str, Any], name: str, default: float | None) -> float | None:
    """A number of seconds (or a duration like "30s") from the body."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be a number of seconds", field=name)
    return parse_duration(value, name)


@routes.get("/v1/subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    service = service_of(request)
    names = [o.name for o in broker_of(request).config.list("subscriptions")]
    return json_response({"subscriptions": [await service.describe(n) for n in names]})


@routes.get("/v1/subscriptions/{name}")
async def get_subscription(request: web.Request) -> web.Response:
    return json_response(await service_of(request).describe(request.match_info["name"]))


@routes.get("/v1/subscriptions/{name}/status")
async def get_status(request: web.Request) -> web.Response:
    return json_response(await service_of(request).status(request.match_info["name"]))


@routes.get("/v1/subscriptions/{name}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    return json_response(await service_of(request).deliveries(
        request.match_info["name"], request.query.get("state") or None,
        int_param(request, "after", 0), int_param(request, "limit", 100, minimum=1,
                                                  maximum=1000)))


@routes.get("/v1/subscriptions/{name}/deliveries/{id:[0-9]+}")
async def get_delivery(request: web.Request) -> web.Response:
    return json_response(await service_of(request).delivery(
        request.match_info["name"], id_param(request)))


@routes.post("/v1/subscriptions/{name}/deliveries/{id:[0-9]+}/retry")
async def retry_delivery(request: web.Request) -> web.Response:
    return json_response(await service_of(request).retry(
        request.match_info["name"], id_param(request)))


@routes.post("/v1/subscriptions/{name}/{verb:pause|resume}")
async def pause_or_resume(request: web.Request) -> web.Response:
    body = await read_object(request, optional=True)
    by = operator_of(request, body)
    return json_response(await service_of(request).set_paused(
        request.match_info["name"], request.match_info["verb"] == "pause", by))


@routes.post("/v1/subscriptions/{name}/receive")
async def receive(request: web.Request) -> web.Response:
    service = service_of(request)
    sub = service.pull_subscription(request.match_info["name"])
    body = await read_object(request, optional=True)
    count = body.get("max", 10)
    if isinstance(count, bool) or not isinstance(count, int):
        raise BadRequest("max must be an integer", field="max")
    wait_s = seconds(body, "wait_s", 0.0) or 0.0
    # A receive that waits holds its connection like a stream does, and counts as one.
    slot: AbstractContextManager[None] = (
        bounds_of(request).streams.hold(principal_of(request).name) if wait_s > 0
        else nullcontext())
    with slot:
        messages = await service.pull.receive(
            sub, max_messages=count, wait_s=wait_s, lease_s=seconds(body, "lease_s", None))
    return json_response(messages)


@routes.post("/v1/subscriptions/{name}/{verb:ack|release|reject|renew}")
async def settle(request: web.Request) -> web.Response:
    service = service_of(request)
    sub = service.pull_subscription(request.match_info["name"])
    body = await read_object(request)
    return json_response(await service.pull.settle(
        sub, request.match_info["verb"], body.get("leases"),
        delay_s=seconds(body, "delay", 0.0) or 0.0, lease_s=seconds(body, "lease_s", None)))
