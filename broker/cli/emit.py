"""`opsbus emit`: publish one event from flags, inline data, a file or stdin."""

from __future__ import annotations

import argparse
import base64
import getpass
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from broker.cli import client_options, json_option
from broker.clock import SystemClock
from broker.errors import BadRequest


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "emit", help="publish one event",
        description="Publish one CloudEvent. Prints its seq (or JSON with --json).",
        epilog="Example: opsbus emit --type deploy.finished --source ci/main "
               "--subject orders --data '{\"version\": \"1.2\"}'",
    )
    parser.add_argument("--type", required=True, help="event type, e.g. deploy.finished")
    parser.add_argument("--source", default=None,
                        help="event source (default cli/<user>@<host>)")
    parser.add_argument("--subject", help="event subject")
    parser.add_argument("--id", help="event id (default: a new UUID)")
    parser.add_argument("--time", help="event time, RFC 3339 (default: now)")
    parser.add_argument("--data", help="data: inline JSON or text, @FILE, or - for stdin")
    parser.add_argument("--content-type", default=None,
                        help="datacontenttype (default application/json when data is JSON)")
    parser.add_argument("--ext", action="append", default=[], metavar="NAME=VALUE",
                        help="extension attribute (repeatable)")
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=emit)


def read_data(spec: str | None) -> bytes | None:
    if spec is None:
        return None
    if spec == "-":
        return sys.stdin.buffer.read()
    if spec.startswith("@"):
        try:
            return Path(spec[1:]).read_bytes()
        except OSError as exc:
            raise BadRequest(f"--data {spec}: {exc.strerror}") from None
    return spec.encode()


def parse_data(raw: bytes, content_type: str | None) -> tuple[str, Any, str]:
    """(member, value, default datacontenttype) for `--data`: JSON when it parses, else
    UTF-8 text, else base64. Text that looks like JSON (or is declared JSON) but does not
    parse is refused rather than sent as a string nobody meant."""
    try:
        return "data", orjson.loads(raw), "application/json"
    except orjson.JSONDecodeError as exc:
        declared_json = content_type is not None and "json" in content_type.lower()
        if declared_json or (content_type is None and raw.lstrip()[:1] in (b"{", b"[")):
            hint = "" if declared_json else "; to send it as text add --content-type text/plain"
            raise BadRequest(f"--data is not valid JSON ({exc}){hint}") from None
    try:
        return "data", raw.decode(), "text/plain"
    except UnicodeDecodeError:
        # Bytes are carried as they are: replacing them would store something else.
        return "data_base64", base64.b64encode(raw).decode("ascii"), "application/octet-stream"


def build_event(args: argparse.Namespace) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": args.id or str(uuid.uuid4()),
        "source": args.source or f"cli/{getpass.getuser()}@{socket.gethostname()}",
        "type": args.type,
        "time": args.time or SystemClock().stamp(),
    }
    if args.subject:
        event["subject"] = args.subject
    raw = read_data(args.data)
    if raw is not None:
        member, value, default_type = parse_data(raw, args.content_type)
        event[member] = value
        event["datacontenttype"] = args.content_type or default_type
    for item in args.ext:
        name, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(f"--ext {item!r} must be NAME=VALUE")
        event[name] = value
    return event


async def emit(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    event = build_event(args)
    async with OpsbusClient(args.url, args.token) as client:
        result = await client.publish(event)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        note = " (duplicate: already stored)" if result.get("duplicate") else ""
        print(f"{result['seq']}{note}")
    return 0
