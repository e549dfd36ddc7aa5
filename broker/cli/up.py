"""`opsbus up`: the broker in-process on the embedded store, sample events, the console."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from broker.auth.local import ensure_admin_token
from broker.cli.console import console_options
from broker.cli.serve import add_settings_flags, settings_from
from broker.errors import OpsbusError
from broker.settings import Settings

log = logging.getLogger("opsbus")

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_events"
BATCH = 500
OWN_EVENTS_EXCLUDED = "NOT (source LIKE 'opsbus/%')"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "up", help="serve, load the sample events once, open the console",
        description="Run the broker in this process on the embedded store (config: "
                    "sample_events/opsbus.toml unless given), publish sample_events/ into "
                    "an empty store, and open the console in a child process (a console "
                    "failure leaves the broker serving). Without a terminal it serves "
                    "headless.")
    parser.add_argument("--samples", default=str(SAMPLES),
                        help="folder of events loaded into an empty store (default %(default)s)")
    console_options(parser)
    add_settings_flags(parser)
    parser.set_defaults(func=up)


def up_settings(args: argparse.Namespace) -> Settings:
    """The serve settings, with the sample config when none is given anywhere."""
    if (args.config is None and "OPSBUS_CONFIG" not in os.environ
            and not Path("opsbus.toml").exists() and (SAMPLES / "opsbus.toml").exists()):
        args.config = str(SAMPLES / "opsbus.toml")
    return settings_from(args)


async def load_samples(url: str, token: str | None, folder: Path) -> int:
    """Publish the folder's events as batches when the store is empty; how many."""
    from broker.client import OpsbusClient
    from broker.eventfiles import read_events

    async with OpsbusClient(url, token) as client:
        # The broker's own events (plugins loaded...) do not make a store "in use".
        if (await client.events(limit=1, filter=OWN_EVENTS_EXCLUDED))["events"]:
            return 0  # loaded before, or a store in use: never load twice
        events = [e.event for e in read_events([folder], validate=False) if e.event]
        for start in range(0, len(events), BATCH):
            await client.publish_batch(events[start:start + BATCH])
        return len(events)


async def up(args: argparse.Namespace) -> int:
    from broker.http.app import create_app
    from broker.http.server import runner_for, site_for

    settings = up_settings(args)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        # The console owns the terminal: the broker's log goes to a file beside the data.
        handler = logging.FileHandler(Path(settings.data_dir) / "opsbus.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
    logging.getLogger().setLevel(settings.log_level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    runner = runner_for(create_app(settings), settings, handle_signals=False)
    await runner.setup()
    status = 0
    try:
        site = site_for(runner, settings)
        try:
            await site.start()
        except OSError as exc:
            raise OpsbusError(f"cannot listen on {settings.listen}: {exc.strerror} "
                              "(pass --listen 127.0.0.1:PORT)") from None
        url = f"http://{settings.host}:{settings.port}"
        # The broker wrote its admin token at start: this process and its console use it.
        token = ensure_admin_token(settings.data_dir) if settings.auth else None
        loaded = await load_samples(url, token, Path(args.samples))
        where = f"opsbus up on {url} (data in {settings.data_dir}, config {settings.config})"
        if loaded:
            where += f"; loaded {loaded} sample events"
        if interactive:
            status = await run_console(args, url, token,
                                       Path(settings.data_dir) / "console.log")
            print(where, file=sys.stderr)
            if status != 0:
                # The console is gone, the broker is not: say so and keep serving.
                print(f"opsbus up: the console stopped with status {status} (details in "
                      f"{Path(settings.data_dir) / 'console.log'}); the broker keeps serving "
                      f"on {url}: reopen it with `opsbus console --url {url}`, stop it with "
                      "Ctrl-C", file=sys.stderr, flush=True)
                await _until_signalled()
        else:
            print(f"{where}\nopsbus up: no terminal on stdin/stdout, so no console; "
                  "serving headless until interrupted", file=sys.stderr, flush=True)
            await _until_signalled()
    finally:
        await runner.cleanup()
    return status


async def run_console(args: argparse.Namespace, url: str, token: str | None,
                      log_file: Path) -> int:
    """The console in a child process on this terminal: whatever happens to it, the
    broker served from this process stays up. Its exit status."""
    command = [sys.executable, "-m", "broker", "console", "--url", url, "--label", "up",
               "--operator", args.operator or getpass.getuser(), "--log-file", str(log_file)]
    if args.screen:
        command += ["--screen", args.screen]
    if args.read_only:
        command.append("--read-only")
    if args.bell is False:
        command.append("--no-bell")
    env = {k: v for k, v in os.environ.items() if k not in ("OPSBUS_URL", "OPSBUS_TOKEN")}
    if token:
        env["OPSBUS_TOKEN"] = token  # not on the command line, where `ps` shows it
    child = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        code = await child.wait()
        return 128 - code if code < 0 else code  # killed by a signal: as a shell says it
    finally:
        if child.returncode is None:
            child.terminate()
            await child.wait()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
