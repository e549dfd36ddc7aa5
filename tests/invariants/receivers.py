"""Real local webhook receivers: one aiohttp server, one path per push subscription,
each answering as its behaviour says, with a ledger of every request and answer."""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass

from aiohttp import web

BEHAVIOURS = ("ok", "slow", "reject", "flaky", "hang")
"""ok: 2xx at once · slow: 2xx after a pause well inside the timeout · reject: 4xx ·
flaky: 5xx for the first attempts of an event (0 to 4 of them), then 2xx · hang: no
answer until the run ends (the broker times out)."""
SLOW_S = (0.05, 0.3)


@dataclass
class Request:
    """One webhook call as the receiver saw it."""

    hook: str
    source: str
    id: str
    arrived: float
    status: int | None = None
    acked_at: float | None = None
    """When a 2xx answer was fully written (the receiver acknowledged the delivery)."""


class Receivers:
    """The receiving side of every push subscription in a run."""

    def __init__(self, behaviours: dict[str, str]) -> None:
        self.behaviours = dict(behaviours)
        self.requests: list[Request] = []
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Receivers:
        app = web.Application()
        app.router.add_post("/{hook}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    def release_hanging(self) -> None:
        """Let every hanging call end (with a 503) so the run can wind down."""
        self._release.set()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hook = request.match_info["hook"]
        source = request.headers.get("ce-source", "")
        ident = request.headers.get("ce-id", "")
        await request.read()
        got = Request(hook, source, ident, time.monotonic())
        self.requests.append(got)
        key = (hook, source, ident)
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        behaviour = self.behaviours.get(hook, "ok")
        status = 200
        if behaviour == "reject":
            status = (400, 410, 422)[zlib.crc32(ident.encode()) % 3]
        elif behaviour == "flaky":
            failures = zlib.crc32(ident.encode()) % 5
            status = 503 if attempt <= failures else 200
        elif behaviour == "slow":
            low, high = SLOW_S
            pause = low + (high - low) * (zlib.crc32(ident.encode()) % 100) / 100
            await asyncio.sleep(pause)  # the receiver is slow; nothing waits on this
        elif behaviour == "hang":
            await self._release.wait()
            status = 503
        response = web.StreamResponse(status=status)
        try:
            await response.prepare(request)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            return response  # the broker gave up on this call first
        got.status = status
        if 200 <= status < 300:
            got.acked_at = time.monotonic()
        return response
