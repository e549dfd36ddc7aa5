"""`opsbus export`: stored events as NDJSON (one structured event a line) for `opsbus replay`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from broker.cli import client_options, whole

PAGE = 1000


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "export", help="write stored events as NDJSON",
        description="Write stored events, oldest first, as NDJSON: one structured "
                    "CloudEvent per line, the format `opsbus replay` reads back.",
        epilog="Example: opsbus export --since 24h --filter \"type LIKE 'ci.%%'\" -o ci.ndjson",
    )
    parser.add_argument("--filter", help="CESQL expression selecting the events")
    parser.add_argument("--since", help="received at or after: a duration (24h) or RFC 3339")
    parser.add_argument("--until", help="received before: a duration (1h) or RFC 3339")
    parser.add_argument("--after", type=whole(), default=0, help="start after this seq")
    parser.add_argument("--limit", type=whole(1), default=None, help="stop after N events")
    parser.add_argument("-o", "--output", type=Path,
                        help="file to write (default: standard output)")
    client_options(parser)
    parser.set_defaults(func=export)


async def export(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        if args.output is None:
            count, first, last = await write_events(client, args, sys.stdout.buffer)
        else:
            # Written beside the target and renamed, so a failed export never leaves a
            # half file where a complete one is expected.
            partial = args.output.with_name(args.output.name + ".partial")
            with open(partial, "wb") as out:
                count, first, last = await write_events(client, args, out)
            partial.replace(args.output)
    where = f" to {args.output}" if args.output else ""
    span = f" (seq {first}..{last})" if count else ""
    print(f"exported {count} events{span}{where}", file=sys.stderr)
    return 0


async def write_events(client: Any, args: argparse.Namespace, out: IO[bytes]
                       ) -> tuple[int, int | None, int | None]:
    """Page through `GET /v1/events` and write each event; (count, first seq, last seq)."""
    from broker.clock import SystemClock
    from broker.timeutil import parse_since

    # Resolved once: a duration sent with every page would slide the window while paging.
    now = SystemClock().now()
    since = parse_since(args.since, "since", now) if args.since else None
    until = parse_since(args.until, "until", now) if args.until else None
    count, first, last = 0, None, None
    after: int | None = args.after
    while after is not None and (args.limit is None or count < args.limit):
        page = await client.events(after=after, limit=PAGE, filter=args.filter,
                                   since=since, until=until)
        for item in page["events"]:
            if args.limit is not None and count >= args.limit:
                break
            out.write(orjson.dumps(item["event"]) + b"\n")
            first = first if first is not None else item["seq"]
            last = item["seq"]
            count += 1
        # A filtered page may be empty and still carry a cursor (the scan cap was hit).
        after = page["next_after"]
    out.flush()
    return count, first, last
