"""The plugin API (version 1): what a plugin's `register(registry)` is handed, and nothing more.

A plugin is a Python file with a `register(registry: Registry)` function. It may set
`__version__` (shown by `GET /v1/plugins`) and `PLUGIN_API_VERSION` (the API version it
was written for; a plugin asking for a newer one than the broker has is not loaded).
Everything a plugin touches is defined here; broker internals stay out of reach so that
they can change without breaking plugins.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

PLUGIN_API_VERSION = 1
"""Bumped on any incompatible change to the names in this module."""

Event = dict[str, Any]
"""A CloudEvent in its JSON (structured) form."""


class Reject(Exception):
    """Raise from a source handler to refuse a request with an HTTP status (401 for a bad
    signature, 400 or 422 for a payload the source cannot read)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class SourceRequest:
    """The HTTP request a source handler turns into events."""

    method: str
    path: str
    """What follows `/v1/sources/<plugin>/` (empty when nothing does), e.g. a mapping name."""
    headers: Mapping[str, str]
    """Case-insensitive."""
    query: Mapping[str, str]
    body: bytes
    config: Mapping[str, Any]
    """The plugin's `[plugins.<name>]` table."""

    def json(self) -> Any:
        """The body as JSON; Reject(400) naming the problem when it is not."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise Reject(f"the request body is not valid JSON: {exc}") from None


def render(template: str, event: Event, *, strict: bool = False) -> str:
    """Fill `{source}`, `{dedupkey}`, `{data.a.b}`... from `event` (the broker's own
    templates: substitution only, no code). ValueError when the template is malformed or,
    with `strict`, when a placeholder has no value in the event."""
    from broker.errors import OpsbusError
    from broker.templates import compile_template, lookup, text_of

    try:
        compiled = compile_template(template)
    except OpsbusError as exc:
        raise ValueError(exc.detail) from None
    if strict:
        for name in compiled.fields:
            if text_of(lookup(event, name)) is None:
                raise ValueError(f"{{{name}}} has no value")
    return compiled.render(event)


def seconds(value: Any) -> float:
    """A duration as configured for actions (`30`, `"30s"`, `"500ms"`, `"2m"`, `"1h"`) in
    seconds; ValueError when it is none of those."""
    from broker.timeutil import parse_duration

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(parse_duration(str(value)))
    except Exception as exc:
        raise ValueError(f"{value!r} is not a duration like '30s'") from exc


def whole_number(text: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """Text from a request (a timestamp header, a count) as an int: ASCII digits only,
    within [minimum, maximum]; ValueError saying what is wrong otherwise. Use it instead of
    `int()`, which takes Unicode digits, signs and blanks and fails past 4,300 digits."""
    from broker.numbers import whole_number as parse

    return parse(text, minimum=minimum, maximum=maximum)


class HttpClient(Protocol):
    """The outbound HTTP the host lends actions: the broker's guarded session."""

    async def post_json(self, url: str, payload: Any, *, timeout: float = 10.0,
                        headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """POST JSON; (status, first 4 KiB of the body). Raises OSError-like errors
        (aiohttp.ClientError, TimeoutError, PermissionError for a forbidden target)."""
        ...


@dataclass
class ActionContext:
    """What an action handler gets besides the action's spec and the event."""

    plugin: str
    config: Mapping[str, Any]
    """The owning plugin's `[plugins.<name>]` table."""
    http: HttpClient
    secret: Callable[[str], str | None]
    """`secret("ENV_NAME")`: a secret from the broker's environment, or None."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("opsbus.plugins"))


@dataclass
class ServiceContext:
    """What a background service gets: its config, a publisher and a stop signal."""

    plugin: str
    config: Mapping[str, Any]
    publish: Callable[[list[Event]], Awaitable[list[dict[str, Any]]]]
    """Validate and publish events; answers `{seq, id, duplicate}` per event. Raises
    ValueError naming the problem when an event is invalid (nothing is published then)."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("opsbus.plugins"))


SourceHandler = Callable[[SourceRequest], "list[Event] | Awaitable[list[Event]]"]
"""Turns one request into CloudEvents (sync or async). Raise Reject to refuse it."""

ActionHandler = Callable[[Mapping[str, Any], Event, ActionContext], Awaitable[dict[str, Any]]]
"""`(spec, event, ctx) -> {"ok", "status", "body", "error", "request"}`."""

Transform = Callable[[Event], "Event | None"]
"""Enrich an event before it is stored (return it, or a copy) or drop it (return None)."""

TargetHook = Callable[[Event], "Awaitable[None] | None"]
"""Called after commit for each event a route sends to `plugin:<name>`."""

Service = Callable[[ServiceContext], Awaitable[None]]
"""A long-running coroutine (a folder watcher); cancelled on reload and at stop."""


class Registry(Protocol):
    """What `register(registry)` may call. Names are global across plugins: the second
    plugin registering a taken name fails to load, naming the owner."""

    name: str
    """The plugin's name (its file name without `.py`)."""
    config: Mapping[str, Any]
    """The plugin's `[plugins.<name>]` table (empty when absent)."""

    def source(self, name: str, handler: SourceHandler, *,
               signed: bool | Callable[[SourceRequest], bool] = False) -> None:
        """Receive `POST /v1/sources/<name>[/<path>]`.

        `signed`: the handler checks each request's signature itself and refuses one
        without it (or a function of the request saying so, e.g. per webhook mapping).
        Requests to an unsigned source need the source's shared secret (`token_env` in
        its `[plugins.<name>]` table), an API token with the publish scope, or the
        table's explicit `public = true`; the broker checks that before the handler."""

    def action(self, kind: str, handler: ActionHandler) -> None:
        """Run `[[actions]]` with `kind = "<kind>"`."""

    def transform(self, name: str, fn: Transform) -> None:
        """Offer a transform; it runs when listed in `[plugins] transforms`."""

    def target(self, name: str, fn: TargetHook) -> None:
        """Act on `plugin:<name>` route targets, after the event is committed."""

    def service(self, name: str, run: Service) -> None:
        """Run a background coroutine while the plugin is loaded."""

    def secret(self, env_name: str) -> str | None:
        """A secret from the broker's environment (e.g. a webhook signing key)."""


__all__ = [
    "PLUGIN_API_VERSION", "ActionContext", "ActionHandler", "Event", "HttpClient", "Registry",
    "Reject", "Service", "ServiceContext", "SourceHandler", "SourceRequest", "TargetHook",
    "Transform", "render", "seconds", "whole_number",
]
