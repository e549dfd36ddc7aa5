"""API middleware: `[[proxy]]` mounts in front of legacy APIs, each call published as an event.

`/proxy/<name>/<path>` forwards to the mount's upstream and answers with the upstream's
answer unchanged (broker/http/proxy.py streams both ways). Which calls become events is
chosen by `emit` rules; events are published in the background so the client never
waits for the broker's fsync, and what is queued is flushed at a clean shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import aiohttp
from yarl import URL

from broker.config import ConfigObject, Kind
from broker.errors import BadRequest, InvalidConfig, NotFound, OpsbusError
from broker.events import new_event
from broker.outbound import close_session, open_session, target_refusal
from broker.routing import check_object
from broker.templates import Template, compile_template

if TYPE_CHECKING:
    from broker.bus import Bus
    from broker.wiring import Wiring

log = logging.getLogger(__name__)

SOURCE = "opsbus/proxy"
FIELDS = ("name", "upstream", "emit", "capture_bodies", "max_body_capture", "event_type",
          "timeout", "description", "public")
EMIT_FIELDS = ("methods", "paths", "statuses")
DEFAULT_CAPTURE = 4096
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"})


def _status_rule(value: Any, what: str) -> str:
    text = str(value).lower()
    code = len(text) == 3 and text.isascii() and text.isdigit()
    family = len(text) == 3 and text[0] in "12345" and text[1:] == "xx"
    if not (code or family):
        raise InvalidConfig(f"{what}: emit.statuses entries are codes like 500 or"
                            f" classes like '5xx', not {value!r}", field="emit.statuses")
    return text


def validate_emit(emit: Any, what: str) -> dict[str, list[str]]:
    """Check `emit = { methods, paths, statuses }`: which calls become events."""
    if not isinstance(emit, dict) or set(emit) - set(EMIT_FIELDS):
        raise InvalidConfig(f"{what}: emit is a table of {', '.join(EMIT_FIELDS)}",
                            field="emit")
    rules: dict[str, list[str]] = {}
    for key in EMIT_FIELDS:
        values = emit.get(key)
        if values is None:
            continue
        if not isinstance(values, list):
            raise InvalidConfig(f"{what}: emit.{key} must be a list", field=f"emit.{key}")
        if key == "methods":
            rules[key] = [str(m).upper() for m in values]
        elif key == "paths":
            rules[key] = [p if str(p).startswith("/") else f"/{p}" for p in map(str, values)]
        else:
            rules[key] = [_status_rule(v, what) for v in values]
    return rules


@dataclass(frozen=True)
class EmitRules:
    """Which calls are published: every rule given must match (none given: all calls)."""

    methods: frozenset[str] | None = None
    paths: tuple[str, ...] | None = None
    """Globs over the path below the mount (`/api/v1/*`; `*` also crosses `/`)."""
    statuses: tuple[str, ...] | None = None
    """Codes (`"404"`) or classes (`"5xx"`)."""

    @classmethod
    def from_spec(cls, emit: dict[str, list[str]]) -> EmitRules:
        return cls(frozenset(emit["methods"]) if "methods" in emit else None,
                   tuple(emit["paths"]) if "paths" in emit else None,
                   tuple(emit["statuses"]) if "statuses" in emit else None)

    def matches(self, method: str, path: str, status: int) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        if self.paths is not None and not any(fnmatchcase(path, p) for p in self.paths):
            return False
        if self.statuses is not None:
            code = str(status)
            return any(rule == code or (rule[1:] == "xx" and rule[0] == code[0])
                       for rule in self.statuses)
        return True


def validate_proxy(spec: Any, allow_private: bool = False) -> dict[str, Any]:
    """Check a `[[proxy]]` mount and return it normalised. The upstream goes through the
    outbound guard webhooks and actions use: never a metadata or link-local address
    however it is spelt, loopback and private ones only with `allow_private_targets`
    (a name is checked on what it resolves to when a call connects)."""
    name = check_object(spec, "proxy", FIELDS)
    upstream = spec.get("upstream")
    try:
        url = URL(str(upstream))
    except ValueError:
        url = URL()
    if not isinstance(upstream, str) or url.scheme not in ("http", "https") or not url.host:
        raise InvalidConfig(f"proxy {name}: upstream must be an http(s) URL, got {upstream!r}",
                            field="upstream")
    reason = target_refusal(url.host, allow_private)
    if reason:
        raise InvalidConfig(f"proxy {name}: upstream refused: {reason}", field="upstream")
    rules = validate_emit(spec.get("emit", {}), f"proxy {name}")
    capture = spec.get("capture_bodies", False)
    if not isinstance(capture, bool):
        raise InvalidConfig(f"proxy {name}: capture_bodies must be true or false",
                            field="capture_bodies")
    limit = spec.get("max_body_capture", DEFAULT_CAPTURE)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 1 << 20:
        raise InvalidConfig(f"proxy {name}: max_body_capture must be 0..1048576 bytes",
                            field="max_body_capture")
    event_type = spec.get("event_type", f"opsbus.api.{name}.call")
    compile_template(event_type, f"proxy {name}: event_type")
    timeout = spec.get("timeout", 60)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise InvalidConfig(f"proxy {name}: timeout must be a positive number of seconds",
                            field="timeout")
    public = spec.get("public", False)
    if not isinstance(public, bool):
        raise InvalidConfig(f"proxy {name}: public must be true or false", field="public")
    return {"name": name, "upstream": str(url).rstrip("/"), "emit": rules, "public": public,
            "capture_bodies": capture, "max_body_capture": limit, "event_type": event_type,
            "timeout": timeout, "description": str(spec.get("description", ""))}


@dataclass(frozen=True)
class Mount:
    """A validated mount, ready to forward."""

    name: str
    upstream: URL
    rules: EmitRules
    capture_bodies: bool
    max_body_capture: int
    event_type: Template
    timeout: float

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Mount:
        return cls(spec["name"], URL(spec["upstream"]), EmitRules.from_spec(spec["emit"]),
                   spec["capture_bodies"], spec["max_body_capture"],
                   compile_template(spec["event_type"]), float(spec["timeout"]))

    def target(self, tail: str, query: str) -> URL:
        """The upstream URL for `/proxy/<name>/<tail>?<query>` (tail kept encoded; it
        has passed `check_tail`, so the URL stays below the upstream's base path)."""
        base = str(self.upstream).rstrip("/")
        return URL(f"{base}/{tail}" + (f"?{query}" if query else ""), encoded=True)


def check_tail(name: str, raw_tail: str) -> None:
    """Refuse a path below a mount that could leave the upstream's base path once the
    upstream decodes and normalises it: `.` and `..` segments (also percent-encoded, or
    hidden behind an encoded `/`), empty segments (`//`) and backslashes, which some
    servers read as `/`. A trailing `/` is kept: it is part of many APIs' paths."""
    segments = raw_tail.split("/")
    for index, segment in enumerate(segments):
        if segment == "":
            if index == len(segments) - 1:
                continue
            raise BadRequest(f"proxy {name}: empty path segment ('//') in the path",
                             proxy=name)
        decoded = segment
        for _ in range(3):  # an upstream (or a proxy before it) may decode more than once
            again = unquote(decoded)
            if again == decoded:
                break
            decoded = again
        if "\\" in decoded or any(part in (".", "..") for part in decoded.split("/")):
            raise BadRequest(f"proxy {name}: the path may not contain '.' or '..' segments"
                             " or backslashes (it must stay below the mount's upstream)",
                             proxy=name)


class BodyCapture:
    """The first `limit` bytes of a body that streams past, and its full size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]

    def summary(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"size": self.size, "truncated": self.size > len(self.head)}
        try:
            doc["text"] = self.head.decode()
        except UnicodeDecodeError:
            doc["base64"] = base64.b64encode(bytes(self.head)).decode()
        return doc


def call_event(name: str, call: dict[str, Any], *, event_type: Template | None = None,
               source: str = SOURCE) -> dict[str, Any]:
    """The event for one API call (also built by `broker.embed` in other services)."""
    context = {"name": name, "method": str(call.get("method", "")).lower(),
               "status": call.get("status"), "data": call}
    type_ = event_type.render(context) if event_type is not None else ""
    return new_event(type=type_ or f"opsbus.api.{name}.call", source=source,
                     subject=str(call.get("path") or "/"), data=call)


def request_id(given: str | None) -> str:
    return given if given and len(given) <= 200 else uuid.uuid4().hex


class CallPublisher:
    """Publishes call events off the request path, in batches. Bounded: when the broker
    cannot keep up, new calls are dropped (counted) rather than held in memory."""

    def __init__(self, bus: Bus, max_pending: int = 10_000, batch: int = 500) -> None:
        self.bus = bus
        self.max_pending = max_pending
        self.batch = batch
        self.published = self.dropped = self.failed = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._done = asyncio.Event()

    def submit(self, event: dict[str, Any]) -> None:
        if self._closing or len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(event)
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = [self._pending.popleft()
                         for _ in range(min(self.batch, len(self._pending)))]
                await self._publish(batch)
        finally:
            self._done.set()

    async def _publish(self, batch: list[dict[str, Any]]) -> None:
        try:
            # A capture is the broker's own record: bodies that do not fit are elided.
            await self.bus.publish(batch, elide=True)
            self.published += len(batch)
            return
        except OpsbusError as exc:
            if len(batch) == 1:
                self.failed += 1
                log.warning("proxy call event %s not published: %s", batch[0]["id"], exc.detail)
                return
        for event in batch:  # one bad event (a transform refusing it) must not sink the rest
            await self._publish([event])

    async def close(self, grace: float = 10.0) -> None:
        """Flush what is queued (the writer is still running when this is called)."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._done.wait(), grace)
        except TimeoutError:
            self.dropped += len(self._pending)
            log.error("%d proxy call events not published at shutdown", len(self._pending))


class Proxy:
    """The mounts of one broker, the upstream session and the call publisher."""

    def __init__(self, bus: Bus, allow_private_targets: bool = False) -> None:
        self.publisher = CallPublisher(bus)
        self.allow_private = allow_private_targets
        """Loopback and private upstreams permitted (never link-local or metadata)."""
        self.calls = self.upstream_errors = 0
        self._configured: dict[str, ConfigObject] = {}
        self._mounts: dict[str, tuple[int, Mount]] = {}
        self._session: aiohttp.ClientSession | None = None

    def on_config(self, objects: list[ConfigObject]) -> None:
        """Config listener: the `proxy` objects as configured now."""
        self._configured = {o.name: o for o in objects if o.kind == "proxy"}

    def is_public(self, name: str) -> bool:
        """Whether the mount is configured `public = true`: callable without an API token."""
        obj = self._configured.get(name)
        return obj is not None and obj.spec.get("public") is True

    def mount(self, name: str) -> Mount:
        """The mount named `name` as configured now (the file or the API changed it)."""
        obj = self._configured.get(name)
        if obj is None:
            raise NotFound(f"no proxy mount named {name!r}; add [[proxy]] to opsbus.toml",
                           proxy=name)
        cached = self._mounts.get(name)
        if cached is None or cached[0] != obj.version:
            cached = (obj.version, Mount.from_spec(obj.spec))
            self._mounts[name] = cached
        return cached[1]

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # The guarded session: every address connected to is checked, resolved names
            # included. Bytes pass through untouched: no decompression, no cookies kept,
            # no environment proxies.
            self._session = open_session(
                self.allow_private, limit=200, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))
        return self._session

    def validate(self, spec: Any) -> dict[str, Any]:
        """The `proxy` kind's validator, under this broker's outbound policy."""
        return validate_proxy(spec, self.allow_private)

    def record(self, mount: Mount, call: dict[str, Any]) -> None:
        """Count a finished call and queue its event when the mount's rules say so."""
        self.calls += 1
        if call.get("error"):
            self.upstream_errors += 1
        if not mount.rules.matches(call["method"], call["path"], int(call["status"])):
            return
        try:
            event = call_event(mount.name, call, event_type=mount.event_type)
        except OpsbusError as exc:  # e.g. a control character in the path: the call stands
            self.publisher.failed += 1
            log.warning("proxy %s: call event not built: %s", mount.name, exc.detail)
            return
        self.publisher.submit(event)

    async def stop(self) -> None:
        await self.publisher.close()
        if self._session is not None:
            await close_session(self._session)


def wire(proxy: Proxy, wiring: Wiring) -> None:
    """Register the `proxy` configuration kind and the background publisher."""
    wiring.kind(Kind("proxy", "proxy mount", proxy.validate))
    wiring.on_config(proxy.on_config)
    wiring.service("proxy-publisher", proxy.publisher.run)
    wiring.on_stop(proxy.stop)
    p = proxy.publisher
    for name, doc, read in (
        ("calls", "Calls passed through proxy mounts.", lambda: proxy.calls),
        ("upstream_errors", "Proxied calls the upstream did not answer.",
         lambda: proxy.upstream_errors),
        ("events_published", "Proxy call events published.", lambda: p.published),
        ("events_dropped", "Proxy call events dropped: the publish buffer was full.",
         lambda: p.dropped),
        ("events_failed", "Proxy call events that could not be published.", lambda: p.failed),
    ):
        wiring.metrics.sampled(f"opsbus_proxy_{name}_total", doc, "counter", read)
