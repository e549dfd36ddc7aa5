"""Publish a service's own API calls to opsbus from inside it: aiohttp and ASGI middleware.

For services that can take a line of code (the proxy is for those that cannot):

    emitter = CallEmitter("http://opsbus:8787", name="billing",
                          emit={"methods": ["POST", "PUT", "DELETE"]})
    app = web.Application(middlewares=[aiohttp_middleware(emitter)])   # aiohttp
    app = ASGIMiddleware(app, emitter)                                 # Starlette, FastAPI...

Each call becomes an event shaped like the proxy's (type `api.<name>.call`, source
`embed/<name>`; data: method, path, query, status, latency_ms, request_id). The proxy's
events are `opsbus.api.<name>.call`: types under `opsbus.` are the broker's own, and
the broker refuses them from any client (a filter `type LIKE '%api.billing.call'`
selects both). Events are posted in batches by a
background task; a request never waits for the broker and never fails because of it.
While the broker is away events wait in a bounded buffer; beyond it they are dropped
and counted (`emitter.stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
from aiohttp import web

from broker.proxy import EmitRules, call_event, request_id, validate_emit
from broker.reserved import reserved_attribute
from broker.templates import compile_template

log = logging.getLogger(__name__)

BATCH_TYPE = "application/cloudevents-batch+json"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class CallEmitter:
    """Buffers call events and posts them to the broker in batches, in the background."""

    def __init__(self, broker_url: str, *, name: str, token: str | None = None,
                 source: str | None = None, event_type: str | None = None,
                 emit: dict[str, Any] | None = None,
                 max_buffer: int = 1000, batch_size: int = 100, flush_interval: float = 0.5,
                 timeout: float = 2.0, max_backoff: float = 30.0) -> None:
        self.url = broker_url.rstrip("/") + "/v1/events"
        self.name = name
        self.source = source or f"embed/{name}"
        self.event_type = compile_template(event_type or f"api.{name}.call",
                                           f"emitter {name}: event_type")
        if reserved_attribute({"type": event_type or "", "source": self.source}):
            raise ValueError(f"emitter {name}: opsbus.* types and opsbus/* sources are the"
                             " broker's own; it refuses them from clients")
        self.rules = EmitRules.from_spec(validate_emit(emit or {}, f"emitter {name}"))
        self.max_buffer, self.batch_size = max_buffer, batch_size
        self.flush_interval, self.timeout, self.max_backoff = flush_interval, timeout, max_backoff
        self.headers = {"Content-Type": BATCH_TYPE}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.sent = self.dropped = self.failed_posts = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def stats(self) -> dict[str, int]:
        """Counters to expose (e.g. on the service's own /metrics)."""
        return {"sent": self.sent, "dropped": self.dropped, "failed_posts": self.failed_posts,
                "buffered": len(self._buffer)}

    def record(self, call: dict[str, Any]) -> None:
        """Queue a finished call; never raises, never waits."""
        try:
            if not self.rules.matches(call["method"], call["path"], int(call["status"])):
                return
            if len(self._buffer) >= self.max_buffer:
                self.dropped += 1
                return
            self._buffer.append(call_event(self.name, call, source=self.source,
                                           event_type=self.event_type))
            self._ensure_running()
            if len(self._buffer) >= self.batch_size and self._wake is not None:
                self._wake.set()
        except Exception:  # the service's request matters more than its event
            self.dropped += 1
            log.exception("call event not recorded")

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="opsbus-emitter")

    async def _run(self) -> None:
        backoff = self.flush_interval
        while True:
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            if await self.flush():
                backoff = self.flush_interval
            else:  # the broker is away: try again later, less often
                backoff = min(self.max_backoff, max(backoff, 0.25) * 2)

    async def flush(self) -> bool:
        """Post everything buffered; False when the broker could not take it (the events
        stay buffered for the next try)."""
        while self._buffer:
            batch = list(self._buffer)[: self.batch_size]
            if not await self._post(batch):
                return False
            for _ in batch:
                self._buffer.popleft()
            self.sent += len(batch)
        return True

    async def _post(self, batch: list[dict[str, Any]]) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(self.url, data=orjson.dumps(batch),
                                          headers=self.headers) as resp:
                if resp.status < 300:
                    return True
                if 400 <= resp.status < 500 and resp.status not in (408, 429):
                    # Refused for good (a bad event, a wrong token): retrying cannot help.
                    log.warning("broker refused %d call events: %s", len(batch),
                                (await resp.text())[:300])
                    self.dropped += len(batch)
                    return True
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass
        self.failed_posts += 1
        return False

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop the background task after a last attempt to post what is buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        self.dropped += len(self._buffer)
        self._buffer.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _call(method: str, path: str, query: dict[str, Any], status: int, started: float,
          rid: str, error: str | None) -> dict[str, Any]:
    return {"method": method, "path": path, "query": query, "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": rid, "error": error}


def aiohttp_middleware(emitter: CallEmitter) -> Any:
    """aiohttp middleware recording every call (after the handler has answered)."""

    @web.middleware
    async def publish_calls(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        rid = request_id(request.headers.get("X-Request-Id"))
        status, error = 500, None
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            query = {k: request.query[k] for k in request.query}
            emitter.record(_call(request.method, request.path, query, status, started, rid,
                                 error))

    return publish_calls


class ASGIMiddleware:
    """ASGI middleware recording every HTTP call; flushes at lifespan shutdown."""

    def __init__(self, app: ASGIApp, emitter: CallEmitter) -> None:
        self.app = app
        self.emitter = emitter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        rid = request_id(headers.get("x-request-id"))
        status, error = 500, None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            self.emitter.record(_call(scope.get("method", "GET"), scope.get("path", "/"),
                                      query, status, started, rid, error))

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.emitter.aclose()
            return message
        return wrapped
