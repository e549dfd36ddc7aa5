"""`opsbus tail`: follow the live stream, resuming across broker restarts."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from broker.cli import client_options, json_option
from broker.summary import one_line


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "tail", help="follow events as they are committed",
        description="Follow the event stream; reconnects and resumes after the last seq.",
    )
    parser.add_argument("--filter", help="CESQL expression, e.g. \"type LIKE 'deploy.%%'\"")
    parser.add_argument("--after", type=int, default=None,
                        help="start after this seq (0 = from the beginning; default: now)")
    parser.add_argument("-n", "--count", type=int, default=None,
                        help="exit after this many events")
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=tail)


async def tail(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    seen = 0

    def state(kind: str, detail: str | None) -> None:
        if kind == "disconnected":
            print(f"opsbus: stream interrupted ({detail}); reconnecting", file=sys.stderr)

    async with OpsbusClient(args.url, args.token) as client:
        if args.filter:  # fail fast with the position of a bad expression
            await client.events(limit=1, filter=args.filter)
        async for seq, event in client.stream(after=args.after, filter=args.filter,
                                              on_state=state):
            if args.json:
                line = orjson.dumps({"seq": seq, "event": event}).decode()
            else:
                line = f"{seq:>8}  {one_line(event)}"
            print(line, flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return 0
    return 0
