"""A real local HTTP upstream for proxy and middleware tests, in its own thread and loop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.broker_process import free_port


class Upstream:
    """A legacy API stand-in on a free port: JSON endpoints, status codes, streaming."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[dict[str, Any]] = []
        self.upload_started = threading.Event()
        """Set when the first bytes of a streamed upload arrive."""
        self.download_go = threading.Event()
        """The download handler sends the rest of its body once this is set."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/api/v1/orders", self.orders)
        app.router.add_get("/api/v1/orders/{id}", self.order)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_put("/upload", self.upload)
        app.router.add_get("/download/{size}", self.download)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def _record(self, request: web.Request, body: bytes = b"") -> None:
        self.seen.append({"method": request.method, "path": request.path_qs,
                          "headers": CIMultiDict(request.headers), "body": body})

    async def orders(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._record(request, body)
        return web.json_response({"created": True, "echo": body.decode()}, status=201,
                                 headers={"Location": "/api/v1/orders/17"})

    async def order(self, request: web.Request) -> web.Response:
        self._record(request)
        response = web.json_response({"id": request.match_info["id"], "query": dict(request.query)},
                                     headers={"X-Upstream": "legacy-erp", "ETag": '"v7"'})
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/")
        return response

    async def status(self, request: web.Request) -> web.Response:
        self._record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/api/v1/orders/1"})

    async def upload(self, request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(65536):
            self.upload_started.set()
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        chunk = b"z" * 65536
        await response.write(chunk)
        # The rest only once the client has the first chunk: proof nothing buffers it all.
        await asyncio.get_running_loop().run_in_executor(None, self.download_go.wait, 20)
        sent = len(chunk)
        while sent < size:
            part = chunk[: size - sent]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response
