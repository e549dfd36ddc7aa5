"""`opsbus store check`: the store's integrity and consistency checks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from broker.cli import client_options, json_option


def register(sub: Any) -> None:
    parser = sub.add_parser("store", help="store maintenance (check)",
                            description="Maintenance of the broker's store.")
    commands = parser.add_subparsers(dest="store_command", metavar="COMMAND",
                                     parser_class=type(parser))
    check = commands.add_parser(
        "check", help="check the store's integrity and consistency",
        description="Run SQLite's integrity check and opsbus's own consistency checks"
                    " (records pointing at missing events, the seq counter, one active item"
                    " per group key, ...) on one snapshot. Exits 1 when a problem is found."
                    " By default the running broker runs them; --data-dir or --file read a"
                    " database directly (a stopped broker, a backup).",
    )
    where = check.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="check this data directory's database directly")
    where.add_argument("--file", type=Path, help="check a database file (e.g. a backup)")
    check.add_argument("--quick", action="store_true",
                       help="quick_check: skip cross-checking indexes against tables")
    client_options(check)
    json_option(check)
    check.set_defaults(func=run_check)
    from broker.cli.store_copy import register_copy

    register_copy(commands)
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)


async def run_check(args: argparse.Namespace) -> int:
    import asyncio

    from broker.errors import NotFound
    from broker.settings import Settings
    from broker.store.sqlite.maintenance import check_file

    if args.file is not None or args.data_dir is not None:
        path = args.file or Settings(data_dir=args.data_dir).db_path
        if not Path(path).is_file():
            raise NotFound(f"{path}: no such database file")
        report = (await asyncio.to_thread(check_file, Path(path), args.quick)).to_dict()
        where = str(path)
    else:
        from broker.client import OpsbusClient

        async with OpsbusClient(args.url, args.token) as client:
            report = await client.store_check(args.quick)
        where = f"the broker at {args.url}"
    if args.json:
        from broker.cli.output import print_json

        print_json(report)
    else:
        counts = (f"{report['events']:,} events, last seq {report['last_seq']}, schema"
                  f" {report['schema_version']}")
        if report["ok"]:
            print(f"store check of {where}: ok ({len(report['checks'])} checks; {counts})")
        else:
            print(f"store check of {where}: {len(report['findings'])} problem(s) ({counts})")
            for finding in report["findings"]:
                print(f"  {finding['check']}: {finding['detail']}")
    return 0 if report["ok"] else 1
