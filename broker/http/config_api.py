"""CRUD for configuration objects: `/v1/routes`, and every kind a feature registers."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from broker.actions.kinds import FILE_ONLY_KINDS
from broker.config import ConfigObject
from broker.errors import Conflict, Forbidden, NotFound
from broker.http.util import broker_of, json_response, read_json


def describe(obj: ConfigObject) -> dict[str, object]:
    return {**obj.spec, "origin": obj.origin, "version": obj.version,
            "updated_at": obj.updated_at}


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in broker_of(request).config.kinds:
        raise NotFound(f"no such endpoint: {request.method} {request.path}")
    return kind


def refuse_host_actions(kind: str, spec: object) -> None:
    """An API token, even an admin one, never gets to run commands on the broker's host."""
    if kind == "actions" and isinstance(spec, dict) and spec.get("kind") in FILE_ONLY_KINDS:
        raise Forbidden(f"actions of kind {spec['kind']!r} run commands on the broker's host:"
                        " define them in the config file (opsbus.toml), not over the API",
                        field="kind")


async def list_objects(request: web.Request) -> web.Response:
    """List configuration objects of a kind (routes, queues, subscriptions, actions)."""
    kind = _kind(request)
    objs = broker_of(request).config.list(kind)
    return json_response({kind: [describe(o) for o in objs]})


async def create_object(request: web.Request) -> web.Response:
    """Create a configuration object; 409 when the name exists."""
    kind = _kind(request)
    config = broker_of(request).config
    spec = await read_json(request)
    refuse_host_actions(kind, spec)
    normalised = config.validate(kind, spec)
    try:
        config.get(kind, normalised["name"])
    except NotFound:
        obj, _ = await config.put(kind, normalised)
        return json_response(describe(obj), status=201)
    raise Conflict(f"{config.kind(kind).singular} {normalised['name']!r} already exists;"
                   " use PUT to replace it")


async def get_object(request: web.Request) -> web.Response:
    """One configuration object."""
    kind = _kind(request)
    return json_response(describe(broker_of(request).config.get(kind, request.match_info["name"])))


async def put_object(request: web.Request) -> web.Response:
    """Create or replace a configuration object."""
    kind = _kind(request)
    spec = await read_json(request)
    refuse_host_actions(kind, spec)
    obj, created = await broker_of(request).config.put(kind, spec,
                                                       name=request.match_info["name"])
    return json_response(describe(obj), status=201 if created else 200)


async def delete_object(request: web.Request) -> web.Response:
    """Delete a configuration object created through the API."""
    kind = _kind(request)
    await broker_of(request).config.delete(kind, request.match_info["name"])
    return web.Response(status=204)


def routes_for(kinds: Iterable[str]) -> list[web.RouteDef]:
    """The CRUD routes, their `{kind}` admitting only the registered kinds: a catch-all
    segment would also match `/v1/config/status` and the like, and a method those do not
    take would then be answered with this endpoint's `Allow` (or served by it)."""
    kind = "{kind:" + "|".join(sorted(kinds)) + "}"
    return [
        web.get(f"/v1/{kind}", list_objects),
        web.post(f"/v1/{kind}", create_object),
        web.get(f"/v1/{kind}/{{name}}", get_object),
        web.put(f"/v1/{kind}/{{name}}", put_object),
        web.delete(f"/v1/{kind}/{{name}}", delete_object),
    ]
