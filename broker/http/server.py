"""Serving the application: one runner, a listening site behind the connection gate,
graceful stop on SIGTERM/SIGINT (what `web.run_app` does, with the gate in front)."""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import Callable
from contextlib import suppress

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from broker.http.bounds import BOUNDS, GatedSite
from broker.settings import Settings

log = logging.getLogger(__name__)

FILE_RESERVE = 256
"""Open files the broker needs beside its connections (store, logs, plugins, outbound)."""


def runner_for(app: web.Application, settings: Settings, *, handle_signals: bool
               ) -> web.AppRunner:
    """The runner: idle connections closed after keepalive_timeout_s; in-flight requests
    get shutdown_grace_s at a graceful stop."""
    return web.AppRunner(app, access_log=None, handle_signals=handle_signals,
                         keepalive_timeout=settings.keepalive_timeout_s,
                         shutdown_timeout=settings.shutdown_grace_s)


def site_for(runner: web.AppRunner, settings: Settings,
             ssl_context: ssl.SSLContext | None = None) -> GatedSite:
    """The listening site on settings.listen, at most max_connections open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < settings.max_connections + FILE_RESERVE:
        # Past the open-file limit accept() fails before the gate can answer 503.
        log.warning("max_connections is %d but the open-file limit is %d: raise it"
                    " (ulimit -n, LimitNOFILE=) to at least %d", settings.max_connections,
                    soft, settings.max_connections + FILE_RESERVE)
    return GatedSite(runner, settings.host, settings.port, limit=settings.max_connections,
                     bounds=runner.app[BOUNDS], ssl_context=ssl_context)


async def _serve(app: web.Application, settings: Settings, ssl_context: ssl.SSLContext | None,
                 started: Callable[[], None]) -> None:
    runner = runner_for(app, settings, handle_signals=True)
    await runner.setup()
    try:
        await site_for(runner, settings, ssl_context).start()
        started()
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        await runner.cleanup()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop (a dependency everywhere but Windows): the same asyncio API with
    less work per request; asyncio's own where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve_forever(app: web.Application, settings: Settings,
                  ssl_context: ssl.SSLContext | None, started: Callable[[], None]) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully (listening ends, in-flight
    requests finish within the grace period, the broker stops)."""
    loop = new_event_loop()
    main = loop.create_task(_serve(app, settings, ssl_context, started))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
