"""The embeddable middleware (aiohttp and ASGI) against a broker that is up and one that is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from broker.embed import ASGIMiddleware, CallEmitter, aiohttp_middleware
from tests.broker_process import ADMIN_TOKEN, free_port
from tests.plugin_helpers import events_of, eventually


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


@pytest.fixture
async def service_factory() -> AsyncIterator[Any]:
    """Start a real aiohttp service wrapped in the middleware of a given emitter."""
    servers: list[TestServer] = []

    async def start(emitter: CallEmitter) -> str:
        app = web.Application(middlewares=[aiohttp_middleware(emitter)])
        app.router.add_route("*", "/api/orders", hello)
        app.router.add_get("/api/missing", missing)
        server = TestServer(app, host="127.0.0.1", port=free_port())
        await server.start_server()
        servers.append(server)
        return str(server.make_url(""))

    yield start
    for server in servers:
        await server.close()


async def timed_calls(url: str, count: int, method: str = "POST") -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            started = time.perf_counter()
            async with http.request(method, url + "/api/orders?page=2",
                                    headers={"X-Request-Id": f"r-{i}"}) as resp:
                assert resp.status == 200
            latencies.append(time.perf_counter() - started)
    return latencies


async def test_aiohttp_middleware_publishes_calls_to_a_running_broker(broker, http,
                                                                      service_factory):
    emitter = CallEmitter(broker.url, name="billing", flush_interval=0.05, token=ADMIN_TOKEN,
                          emit={"methods": ["POST", "GET"]})
    url = await service_factory(emitter)
    await timed_calls(url, 5)
    async with http.get(url + "/api/missing") as resp:
        assert resp.status == 404
    async with http.delete(url + "/api/orders") as resp:
        assert resp.status == 200  # answered, but DELETE is not emitted

    async def arrived() -> list[dict] | None:
        events = await events_of(http, broker, source="embed/billing")
        return events if len(events) == 6 else None

    events = await eventually(arrived)
    assert {e["type"] for e in events} == {"api.billing.call"}
    first = events[0]["data"]
    assert first["method"] == "POST" and first["path"] == "/api/orders"
    assert first["query"] == {"page": "2"} and first["status"] == 200
    assert first["request_id"] == "r-0" and first["latency_ms"] >= 0
    assert events[-1]["data"]["status"] == 404
    await emitter.aclose()
    assert emitter.stats == {"sent": 6, "dropped": 0, "failed_posts": 0, "buffered": 0}


async def test_a_broker_that_is_down_slows_nothing_and_drops_are_counted(service_factory):
    # A broker that accepts the connection and never answers, and an emitter that would
    # wait an hour for it: the service's calls are all answered, so none waited on it
    # (how fast is for a benchmark to say; the deadline only ends a hang).
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    emitter = CallEmitter(f"http://127.0.0.1:{port}", name="billing", max_buffer=10,
                          flush_interval=0.01, timeout=3600)
    try:
        await asyncio.wait_for(timed_calls(await service_factory(emitter), 30), 60)
        assert emitter.stats["buffered"] == 10 and emitter.stats["dropped"] == 20
        await emitter.aclose(timeout=0.1)
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert emitter.stats["dropped"] == 30 and emitter.stats["sent"] == 0


async def _async(value: bool) -> bool:
    return value


async def asgi_app(scope: dict, receive: Any, send: Any) -> None:
    """The smallest ASGI application: 201 for POST, 200 otherwise; it raises on /boom."""
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start",
                "status": 201 if scope["method"] == "POST" else 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def asgi_call(app: ASGIMiddleware, method: str, path: str, query: bytes = b"") -> list:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(b"x-request-id", b"asgi-1")]}
    await app(scope, receive, send)
    return sent


async def test_asgi_middleware_up_and_down(broker, http):
    emitter = CallEmitter(broker.url, name="asgi", flush_interval=0.05, token=ADMIN_TOKEN)
    app = ASGIMiddleware(asgi_app, emitter)
    sent = await asgi_call(app, "POST", "/v2/tickets", b"team=ops")
    assert sent[0]["status"] == 201 and sent[1]["body"] == b"ok"
    with pytest.raises(RuntimeError):
        await asgi_call(app, "GET", "/boom")

    async def arrived() -> list[dict] | None:
        events = await events_of(http, broker, source="embed/asgi")
        return events if len(events) == 2 else None

    first, boom = [e["data"] for e in await eventually(arrived)]
    assert first["path"] == "/v2/tickets" and first["status"] == 201
    assert first["query"] == {"team": "ops"} and first["request_id"] == "asgi-1"
    assert boom["status"] == 500 and boom["error"] == "RuntimeError"
    await emitter.aclose()

    away = CallEmitter(f"http://127.0.0.1:{free_port()}", name="asgi", max_buffer=3,
                       timeout=0.2)
    app = ASGIMiddleware(asgi_app, away)
    # The calls are answered while the broker is away: recording is synchronous (sending
    # is the emitter's own task), and what the buffer cannot hold is dropped and counted.
    for _ in range(10):
        sent = await asgi_call(app, "POST", "/v2/tickets")
        assert sent[0]["status"] == 201
    assert away.stats["dropped"] == 7 and away.stats["buffered"] == 3

    # Lifespan shutdown flushes (here: gives up on the absent broker) and closes.
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def lifespan_app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await receive()

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        return None

    await ASGIMiddleware(lifespan_app, away)({"type": "lifespan"}, receive, send)
    assert away.stats["buffered"] == 0 and away.stats["dropped"] == 10
