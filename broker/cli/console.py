"""`opsbus console`: the Textual terminal console, or with `--web` the same console served
to a browser (imported only when the command runs)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

SCREENS = ("queues", "stream", "deliveries", "emit", "silences", "catalog")
WEB_LISTEN = "127.0.0.1:8790"


def console_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `console` and `up`."""
    parser.add_argument("--operator", default=None,
                        help="who you are in claims and notes (default: the context's "
                             "operator, else your login name)")
    parser.add_argument("--screen", choices=SCREENS, default=None,
                        help="the view to open on (default: the context's, else queues)")
    parser.add_argument("--read-only", action="store_true",
                        help="hide every key that changes the broker's state")
    parser.add_argument("--no-bell", dest="bell", action="store_false", default=None,
                        help="no terminal bell when a critical or high item opens")
    parser.add_argument("--log-file", default=None,
                        help="where the console logs (default "
                             "$XDG_STATE_HOME/opsbus/console.log)")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "console", help="open the terminal console",
        description="Triage in the terminal: queues (the home), stream, detail, emit, "
                    "deliveries. Contexts (url, token, operator, screen, bell) come from "
                    "$XDG_CONFIG_HOME/opsbus/console.toml.")
    parser.add_argument("--url", default=None,
                        help="broker URL (env OPSBUS_URL; default from the context, "
                             "else http://127.0.0.1:8787)")
    parser.add_argument("--token", default=None,
                        help="API bearer token (env OPSBUS_TOKEN; default: the context's,"
                             " else <data_dir>/admin.token of a broker on this machine)")
    parser.add_argument("--context", default=None, help="a named context of console.toml")
    parser.add_argument("--web", action="store_true",
                        help="serve the console to a browser instead (needs a token: the "
                             "broker's, or the one-time URL printed at start)")
    parser.add_argument("--web-listen", default=WEB_LISTEN,
                        help="address of the web console (default %(default)s; keep it on "
                             "loopback unless a TLS proxy is in front)")
    parser.add_argument("--label", default=None, help=argparse.SUPPRESS)
    console_options(parser)
    parser.set_defaults(func=console)


def console(args: argparse.Namespace) -> int:
    # Textual is imported here, not at module level: `broker` never loads it otherwise.
    from console.contexts import resolve_context
    from console.faults import default_log_path, log_to_file

    ctx = resolve_context(args.context, url=args.url or os.environ.get("OPSBUS_URL"),
                          token=args.token or os.environ.get("OPSBUS_TOKEN"),
                          operator=args.operator, environ=os.environ, screen=args.screen,
                          bell=args.bell)
    if ctx.token is None:
        from dataclasses import replace

        from broker.auth.local import local_token

        ctx = replace(ctx, token=local_token(ctx.url, os.environ))
    if args.web:
        from console.web import serve_web

        return serve_web(ctx, args)
    from console.app import OpsbusConsole

    log_path = Path(args.log_file) if args.log_file else default_log_path(os.environ)
    log_to_file(log_path)
    app = OpsbusConsole(ctx.url, token=ctx.token, operator=ctx.operator or getpass.getuser(),
                        context=args.label or ctx.name, screen=ctx.screen or "queues",
                        read_only=args.read_only, bell=ctx.bell, log_path=log_path)
    app.run()
    code = app.return_code or 0
    if code:
        print(f"opsbus console: stopped by an unexpected error (status {code}); details in "
              f"{log_path}", file=sys.stderr)
    return code
