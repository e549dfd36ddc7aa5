"""`opsbus console`: the Textual terminal console (imported only when the command runs)."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

SCREENS = ("stream", "queues", "deliveries", "emit", "silences")


def console_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `console` and `up`."""
    parser.add_argument("--operator", default=None,
                        help="who you are in claims and notes (default: the context's "
                             "operator, else your login name)")
    parser.add_argument("--screen", choices=SCREENS, default="stream",
                        help="the view to open on (default %(default)s)")
    parser.add_argument("--read-only", action="store_true",
                        help="hide every key that changes the broker's state")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "console", help="open the terminal console",
        description="Live triage in the terminal: stream, queues, detail, emit, deliveries. "
                    "Contexts (url, token, operator) come from "
                    "$XDG_CONFIG_HOME/opsbus/console.toml.")
    parser.add_argument("--url", default=None,
                        help="broker URL (env OPSBUS_URL; default from the context, "
                             "else http://127.0.0.1:8787)")
    parser.add_argument("--token", default=None, help="API bearer token (env OPSBUS_TOKEN)")
    parser.add_argument("--context", default=None, help="a named context of console.toml")
    console_options(parser)
    parser.set_defaults(func=console)


def console(args: argparse.Namespace) -> int:
    # Textual is imported here, not at module level: `broker` never loads it otherwise.
    from console.app import OpsbusConsole
    from console.contexts import resolve_context

    ctx = resolve_context(args.context, url=args.url or os.environ.get("OPSBUS_URL"),
                          token=args.token or os.environ.get("OPSBUS_TOKEN"),
                          operator=args.operator, environ=os.environ)
    app = OpsbusConsole(ctx.url, token=ctx.token, operator=ctx.operator or getpass.getuser(),
                        context=ctx.name, screen=args.screen, read_only=args.read_only)
    app.run()
    return 0
