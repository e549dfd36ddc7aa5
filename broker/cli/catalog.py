"""`opsbus catalog [SOURCE TYPE]`: what the broker has seen, per source and type, and the
inferred shape of its data."""

from __future__ import annotations

import argparse
from typing import Any

from broker.cli import client_options, json_option
from broker.cli.output import print_json, print_table


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "catalog", help="the event catalog: sources and types seen, rates, data shapes",
        description="List every source and type the broker has seen (count, rate, usual"
                    " gap, last seen, silent producers), or one of them with the shape of"
                    " its data inferred from what arrived.",
        epilog="Drift (a field added, removed or retyped; a producer gone silent) is"
               " published as opsbus.catalog.changed events: `opsbus tail --filter"
               " \"type = 'opsbus.catalog.changed'\"` follows it.")
    parser.add_argument("source", nargs="?", help="a source, to show one entry")
    parser.add_argument("type", nargs="?", help="its event type")
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=catalog)


async def catalog(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient
    from broker.errors import BadRequest

    if (args.source is None) != (args.type is None):
        raise BadRequest("give both SOURCE and TYPE to show one entry, or neither to list")
    async with OpsbusClient(args.url, args.token) as client:
        if args.source is not None:
            entry = await client.catalog_entry(args.source, args.type)
            if args.json:
                print_json(entry)
            else:
                show_entry(entry)
            return 0
        listing = await client.catalog()
    if args.json:
        print_json(listing)
        return 0
    if not listing.get("enabled", True):
        print("the catalog is off on this broker (catalog = false)")
        return 0
    rows = [[e["source"], e["type"], str(e["count"]), per_minute(e["rate_per_s"]),
             duration(e.get("usual_gap_s")), e["last_seen"][:19].replace("T", " "),
             "SILENT" if e["silent"] else "", str(e["fields"]) + ("+" if e["truncated"] else "")]
            for e in listing["entries"]]
    print_table(rows, ["source", "type", "count", "rate/min", "usual gap", "last seen (utc)",
                       "state", "fields"])
    return 0


def show_entry(entry: dict[str, Any]) -> None:
    print(f"{entry['type']} from {entry['source']}")
    print(f"  seen {entry['count']} times, first {entry['first_seen']}, last"
          f" {entry['last_seen']}{' — SILENT' if entry['silent'] else ''}")
    print(f"  rate {per_minute(entry['rate_per_s'])}/min, usual gap"
          f" {duration(entry.get('usual_gap_s'))}; shape learned from {entry['sampled']}"
          f" events{' (truncated)' if entry['truncated'] else ''}")
    rows = [[path, "|".join(field["types"]), "required" if field["required"] else "optional",
             str(field["seen"])] for path, field in entry["shape"].items()]
    if rows:
        print()
        print_table(rows, ["path", "types", "presence", "seen"])


def per_minute(rate_per_s: float) -> str:
    value = rate_per_s * 60
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def duration(seconds: float | None) -> str:
    """`42s`, `5m`, `3.5h`, `2d`; `-` when unknown."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}".removesuffix(".0") + unit
    return f"{seconds:.1f}".removesuffix(".0") + "s"
