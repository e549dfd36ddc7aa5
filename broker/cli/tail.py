"""`opsbus tail`: follow the live stream, resuming across broker restarts."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from broker.cli import client_options, json_option, whole
from broker.errors import BadRequest
from broker.summary import one_line


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "tail", help="follow events as they are committed",
        description="Follow the event stream; reconnects and resumes after the last seq.",
    )
    parser.add_argument("--filter", help="CESQL expression, e.g. \"type LIKE 'deploy.%%'\"")
    parser.add_argument("--after", type=whole(), default=None,
                        help="start after this seq (0 = from the beginning; default: now)")
    parser.add_argument("-n", "--count", type=whole(1), default=None,
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

    if args.count is not None and args.count < 1:
        raise BadRequest("--count must be at least 1")
    if args.after is not None and args.after < 0:
        raise BadRequest("--after must be a seq, 0 or more")
    async with OpsbusClient(args.url, args.token) as client:
        # Fail fast on a wrong URL or token, and with the position of a bad expression;
        # only an established stream is worth reconnecting to.
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
