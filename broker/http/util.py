"""Helpers shared by handlers: JSON in and out, query parameters, the broker key."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from broker.core import Broker
from broker.errors import BadRequest, NotFound
from broker.numbers import MAX_ID, NumberError, whole_number

BROKER = web.AppKey("broker", Broker)

__all__ = ["BROKER", "MAX_ID", "bool_param", "broker_of", "id_param", "int_param",
           "json_response", "parse_json", "parse_object", "read_json", "read_object"]


def broker_of(request: web.Request) -> Broker:
    return request.app[BROKER]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json",
                        headers=headers)


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """The request body as JSON; 400 naming the problem otherwise."""
    return parse_json(await request.read(), optional=optional)


def parse_json(body: bytes, *, optional: bool = False) -> Any:
    """A request body already read, as JSON (for handlers that parse it off the loop)."""
    if not body.strip():
        if optional:
            return {}
        raise BadRequest("the request body is empty; a JSON object is expected")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    return parse_object(await request.read(), optional=optional)


def parse_object(body: bytes, *, optional: bool = False) -> dict[str, Any]:
    """A request body already read, as a JSON object."""
    data = parse_json(body, optional=optional)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def int_param(request: web.Request, name: str, default: int, *, minimum: int = 0,
              maximum: int | None = None) -> int:
    """A whole-number query parameter; 400 naming it when it is not ASCII digits within
    [minimum, maximum]."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return whole_number(raw, minimum=minimum, maximum=MAX_ID if maximum is None else maximum)
    except NumberError as exc:
        raise BadRequest(f"query parameter {name} {exc}", parameter=name) from None


_YES_NO = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def bool_param(request: web.Request, name: str, default: bool = False) -> bool:
    """A yes/no query parameter (true, false, 1, 0, yes, no); 400 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = _YES_NO.get(raw.lower())
    if value is None:
        raise BadRequest(f"query parameter {name} must be true or false, got {raw[:40]!r}",
                         parameter=name)
    return value


def id_param(request: web.Request, name: str = "id") -> int:
    """A numeric path segment (the route pattern admits only ASCII digits); 404 past the
    64-bit range, where no object can exist."""
    raw = request.match_info[name]
    try:
        return whole_number(raw)
    except NumberError:
        shown = raw if len(raw) <= 40 else f"{raw[:20]}… ({len(raw)} digits)"
        raise NotFound(f"no object has {name} {shown}: {name}s are at most {MAX_ID}",
                       parameter=name) from None
