"""API actions: validation of the `[[actions]]` config kind and the compiled, live
registry. Secrets are named by environment variable and resolved when an action is
loaded, from the environment handed to the registry."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker.actions.render import (
    UrlTemplate,
    compile_json,
    compile_url,
    render_header,
    render_json,
    render_text,
    render_url,
)
from broker.clock import Clock
from broker.config.repository import ConfigObject
from broker.errors import InvalidConfig, OpsbusError
from broker.outbound import OutboundRequest, header_name_ok, secret_headers
from broker.outbound_config import validate_headers
from broker.routing import check_name
from broker.templates import Template, compile_template
from broker.timeutil import parse_duration

HTTP_FIELDS = {"name", "kind", "description", "method", "url", "headers", "body",
               "content_type", "auth", "timeout", "retries", "retry_backoff", "rate"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
              "h": 3600, "hour": 3600}
AUTH_FIELDS = {"bearer": {"token_env"}, "basic": {"username", "username_env", "password_env"},
               "api_key": {"header", "key_env"}}


def parse_rate(text: Any, what: str) -> tuple[float, float]:
    """`10/s`, `30/m`, `100/h` -> (count, per seconds)."""
    match = RATE.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise InvalidConfig(f"{what} must look like '10/s', '30/m' or '100/h'")
    return float(match.group(1)), float(RATE_UNITS[match.group(2)])


def _seconds(value: Any, what: str) -> float:
    try:
        seconds = parse_duration(value, what)
    except OpsbusError as exc:
        raise InvalidConfig(exc.detail) from None
    if seconds <= 0:
        raise InvalidConfig(f"{what} must be positive")
    return seconds


def _validate_auth(auth: Any, where: str) -> dict[str, Any]:
    if not isinstance(auth, dict) or not isinstance(auth.get("type"), str) \
            or auth["type"] not in AUTH_FIELDS:
        raise InvalidConfig(f"{where}: auth must be a table with type 'bearer', 'basic'"
                            " or 'api_key'")
    kind = auth["type"]
    unknown = sorted(set(auth) - AUTH_FIELDS[kind] - {"type"})
    if unknown:
        raise InvalidConfig(f"{where}: auth: unknown field(s) for {kind}: {', '.join(unknown)}")
    required = {"bearer": ["token_env"], "basic": ["password_env"],
                "api_key": ["header", "key_env"]}[kind]
    for name in required:
        if not isinstance(auth.get(name), str) or not auth[name]:
            raise InvalidConfig(f"{where}: auth.{name} is required")
    if kind == "basic" and not (auth.get("username") or auth.get("username_env")):
        raise InvalidConfig(f"{where}: auth needs username or username_env")
    if kind == "api_key" and not header_name_ok(auth["header"]):
        raise InvalidConfig(f"{where}: auth.header is not a valid header name")
    return dict(auth)


def validate_action(spec: Any) -> dict[str, Any]:
    """Check an action's JSON form; return it normalised. Kinds other than `http` are
    run by plugins: only the common fields are checked here."""
    if not isinstance(spec, dict):
        raise InvalidConfig("an action must be an object")
    name = check_name(spec.get("name"), "action")
    where = f"action {name}"
    kind = spec.get("kind", "http")
    if not isinstance(kind, str) or not kind:
        raise InvalidConfig(f"{where}: kind must be a string such as 'http'")
    out: dict[str, Any] = {**spec, "name": name, "kind": kind}
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidConfig(f"{where}: description must be a string")
    out["description"] = description
    out["timeout"] = spec.get("timeout", "10s")
    _seconds(out["timeout"], f"{where}: timeout")
    retries = spec.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise InvalidConfig(f"{where}: retries must be an integer between 0 and 20")
    out["retries"] = retries
    out["retry_backoff"] = spec.get("retry_backoff", "1s")
    _seconds(out["retry_backoff"], f"{where}: retry_backoff")
    if spec.get("rate") is not None:
        parse_rate(spec["rate"], f"{where}: rate")
    if kind != "http":
        return out
    unknown = sorted(set(spec) - HTTP_FIELDS)
    if unknown:
        raise InvalidConfig(f"{where}: unknown field(s) {', '.join(unknown)}")
    method = str(spec.get("method", "POST")).upper()
    if method not in METHODS:
        raise InvalidConfig(f"{where}: method must be one of {', '.join(METHODS)}")
    out["method"] = method
    if spec.get("url") is None:
        raise InvalidConfig(f"{where}: url is required")
    compile_url(spec["url"], f"{where}: url")
    out["headers"] = validate_headers(spec.get("headers"), f"{where}: headers")
    for header, value in out["headers"].items():
        compile_template(value, f"{where}: headers.{header}")
    if "body" in spec:
        body = spec["body"]
        if isinstance(body, str):
            compile_template(body, f"{where}: body")
        else:
            compile_json(body, f"{where}: body")
    if spec.get("content_type") is not None and not isinstance(spec["content_type"], str):
        raise InvalidConfig(f"{where}: content_type must be a string")
    if spec.get("auth") is not None:
        out["auth"] = _validate_auth(spec["auth"], where)
    return out


class RateLimiter:
    """A token bucket: `count` calls per `per` seconds, bursts up to `count`."""

    def __init__(self, count: float, per: float, clock: Clock) -> None:
        self.rate = count / per
        self.capacity = max(1.0, count)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await self.clock.sleep((1 - self.tokens) / self.rate)


@dataclass
class Action:
    """A loaded action: templates compiled, secrets resolved."""

    name: str
    kind: str
    spec: dict[str, Any]
    timeout: float
    retries: int
    retry_backoff: float
    limiter: RateLimiter | None = None
    method: str = "POST"
    url: UrlTemplate | None = None
    headers: dict[str, Template] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False
    content_type: str | None = None
    auth_headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    """Why the action cannot run (a missing secret variable); its jobs fail with it."""

    def render(self, event: dict[str, Any], params: Mapping[str, Any] | None = None
               ) -> OutboundRequest:
        """The exact request for `event` (RenderError when a URL field is missing)."""
        assert self.url is not None
        headers = {k: render_header(t, event, params) for k, t in self.headers.items()}
        body = b""
        if self.has_body:
            if isinstance(self.body, Template):
                body = render_text(self.body, event, params).encode()
                headers.setdefault("Content-Type", self.content_type or "text/plain")
            else:
                body = orjson.dumps(render_json(self.body, event, params))
                headers.setdefault("Content-Type", self.content_type or "application/json")
        headers.update(self.auth_headers)
        return OutboundRequest(self.method, render_url(self.url, event, params), headers, body,
                               secret_headers(headers, frozenset(self.auth_headers)))


def _resolve_auth(auth: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    def need(var: str) -> str:
        value = environ.get(var)
        if not value:
            raise InvalidConfig(f"environment variable {var} is not set")
        return value

    if auth["type"] == "bearer":
        return {"Authorization": f"Bearer {need(auth['token_env'])}"}
    if auth["type"] == "basic":
        user = auth.get("username") or need(auth["username_env"])
        token = base64.b64encode(f"{user}:{need(auth['password_env'])}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {auth["header"]: need(auth["key_env"])}


def build(spec: dict[str, Any], environ: Mapping[str, str], clock: Clock) -> Action:
    rate = parse_rate(spec["rate"], "rate") if spec.get("rate") else None
    action = Action(spec["name"], spec["kind"], spec, parse_duration(spec["timeout"]),
                    spec["retries"], parse_duration(spec["retry_backoff"]),
                    RateLimiter(*rate, clock) if rate else None)
    if action.kind != "http":
        return action
    action.method = spec["method"]
    action.url = compile_url(spec["url"], "url")
    action.headers = {k: compile_template(v, k) for k, v in spec["headers"].items()}
    if "body" in spec:
        action.has_body = True
        body = spec["body"]
        action.body = compile_template(body) if isinstance(body, str) else compile_json(body,
                                                                                        "body")
    action.content_type = spec.get("content_type")
    if spec.get("auth"):
        try:
            action.auth_headers = _resolve_auth(spec["auth"], environ)
        except InvalidConfig as exc:
            action.problem = exc.detail
    return action


class ActionRegistry:
    """The live actions; a reload keeps each unchanged action's rate limiter."""

    def __init__(self, environ: Mapping[str, str], clock: Clock) -> None:
        self._environ = environ
        self._clock = clock
        self.by_name: dict[str, Action] = {}

    def load(self, objects: Iterable[ConfigObject]) -> None:
        table: dict[str, Action] = {}
        for obj in objects:
            if obj.kind != "actions":
                continue
            old = self.by_name.get(obj.name)
            action = build(obj.spec, self._environ, self._clock)
            if old is not None and old.spec.get("rate") == obj.spec.get("rate"):
                action.limiter = old.limiter
            table[obj.name] = action
        self.by_name = table

    def get(self, name: str) -> Action | None:
        return self.by_name.get(name)
