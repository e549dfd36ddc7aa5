"""`opsbus console --web`: the same console served to a browser by textual-serve, one
console process per browser tab, behind a token (never an open control surface)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hmac
import os
import secrets
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from textual_serve.server import Server

from broker.errors import BadRequest, OpsbusError
from broker.numbers import NumberError, whole_number
from console.contexts import Context

COOKIE = "opsbus_console"
TEMPLATES = Path(__file__).resolve().parent / "templates"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def split_listen(text: str) -> tuple[str, int]:
    """`host:port` (an IPv6 host in brackets) as (host, port)."""
    host, sep, port = text.rpartition(":")
    try:
        number = whole_number(port, maximum=65535)
    except NumberError:
        raise BadRequest(f"--web-listen {text[:80]!r} must look like 127.0.0.1:8790"
                         ) from None
    if not sep:
        raise BadRequest(f"--web-listen {text[:80]!r} must look like 127.0.0.1:8790")
    return host.strip("[]") or "127.0.0.1", number


class Gate:
    """Who may use the web console: a one-time URL token (printed at start) or the
    broker's token exchange for a session cookie; every request then needs the cookie,
    and the websocket also a same-origin `Origin`."""

    def __init__(self, broker_token: str | None) -> None:
        self.one_time: str | None = secrets.token_urlsafe(24)
        self.broker_token = broker_token
        self.session = secrets.token_urlsafe(32)

    def _redeem(self, offered: str) -> bool:
        if self.one_time is not None and hmac.compare_digest(offered, self.one_time):
            self.one_time = None  # one use: a leaked link is worth nothing afterwards
            return True
        return self.broker_token is not None and hmac.compare_digest(
            offered, self.broker_token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        offered = request.query.get("token")
        if offered:
            if not self._redeem(offered):
                raise web.HTTPUnauthorized(text="that token is not valid (a one-time link "
                                                "works once)\n")
            location = request.rel_url.with_query(
                {k: v for k, v in request.query.items() if k != "token"})
            response = web.HTTPSeeOther(location=str(location))
            response.set_cookie(COOKIE, self.session, httponly=True, samesite="Strict",
                                secure=request.secure)
            return response
        bearer = request.headers.get("Authorization", "")
        scheme, _, credential = bearer.partition(" ")
        authorised = hmac.compare_digest(request.cookies.get(COOKIE, ""), self.session) or (
            scheme.lower() == "bearer" and credential and self._redeem(credential.strip()))
        if not authorised:
            raise web.HTTPUnauthorized(
                text="open the link printed by `opsbus console --web` (it carries a "
                     "one-time token), or add ?token=<the broker's token>\n")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None and origin not in (
                f"http://{request.host}", f"https://{request.host}"):
            raise web.HTTPForbidden(text="cross-origin websocket refused\n")
        answer: web.StreamResponse = await handler(request)
        return answer


class WebConsole(Server):
    """textual-serve's server with our gate, our page and one line of output."""

    def __init__(self, command: str, host: str, port: int, gate: Gate) -> None:
        super().__init__(command, host=host, port=port, title="opsbus console",
                         templates_path=TEMPLATES)
        self.gate = gate

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.gate.middleware)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """The link is printed by `serve_web` (textual-serve's banner is not wanted)."""


def console_command(ctx: Context, args: argparse.Namespace) -> str:
    """The command textual-serve runs per browser tab (the token goes by environment)."""
    command = [sys.executable, "-m", "broker", "console", "--url", ctx.url,
               "--operator", ctx.operator or getpass.getuser(), "--label",
               args.label or ctx.name or "web", "--screen", ctx.screen or "queues"]
    if args.read_only:
        command.append("--read-only")
    if args.log_file:
        command += ["--log-file", args.log_file]
    return shlex.join(command)


def serve_web(ctx: Context, args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    host, port = split_listen(args.web_listen)
    if host not in LOOPBACK:
        print(f"opsbus console: serving on {host}, beyond this machine: put a TLS proxy in "
              "front, the session cookie and token travel in clear otherwise",
              file=sys.stderr)
    if ctx.token:
        os.environ["OPSBUS_TOKEN"] = ctx.token  # inherited by each console, not on argv
    gate = Gate(ctx.token)
    server = WebConsole(console_command(ctx, args), host, port, gate)
    try:
        asyncio.run(_serve(server, host, port, gate))
    except OSError as exc:
        raise OpsbusError(f"cannot listen on {args.web_listen}: {exc.strerror}") from None
    return 0


async def _serve(server: WebConsole, host: str, port: int, gate: Gate) -> None:
    runner = web.AppRunner(await server._make_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        shown = f"[{host}]" if ":" in host else host
        print(f"opsbus console on http://{shown}:{port}/?token={gate.one_time}\n"
              "  (a one-time link; afterwards ?token=<the broker's token> opens it too)",
              file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
