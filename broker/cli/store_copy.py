"""`opsbus store copy`: move an embedded (SQLite) installation onto PostgreSQL."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from broker.errors import OpsbusError


def register_copy(commands: Any) -> None:
    """The `copy` action of `opsbus store`."""
    copy = commands.add_parser(
        "copy", help="copy a SQLite installation into an empty PostgreSQL database",
        description="Copy events (keeping their seqs), todo items with their history, "
                    "deliveries, action jobs and configuration from a stopped broker's "
                    "data directory into an empty PostgreSQL database, in one transaction, "
                    "then compare the row counts of every table.",
        epilog="Example: opsbus store copy --from .opsbus "
               "--to postgresql://opsbus@db.internal:5432/opsbus",
    )
    copy.add_argument("--from", dest="source", default=".opsbus",
                      help="data directory or opsbus.db file (default %(default)s)")
    copy.add_argument("--to", dest="target", required=True,
                      help="postgresql://user@host:port/database")
    copy.add_argument("--quiet", action="store_true", help="no progress lines")
    copy.set_defaults(func=store_copy)


async def store_copy(args: argparse.Namespace) -> int:
    from broker.clock import SystemClock
    from broker.store.postgres.connection import PgOptions, check_url
    from broker.store.postgres.copy import copy_sqlite_to_postgres, count_lines

    check_url(args.target)
    options = PgOptions(args.target)
    clock = SystemClock()
    started = clock.monotonic()
    shown: dict[str, float] = {}

    def progress(table: str, done: int, total: int) -> None:
        now = clock.monotonic()
        if args.quiet or (done < total and now - shown.get(table, 0.0) < 1.0):
            return
        shown[table] = now
        share = f" ({100 * done // total}%)" if total else ""
        print(f"{table}: {done:,} / {total:,}{share}", file=sys.stderr)

    report = await copy_sqlite_to_postgres(args.source, options, progress=progress)
    for line in count_lines(report):
        print(line)
    span = f", seq {report.first_seq}..{report.last_seq}" if report.last_seq else ""
    if not report.ok:
        raise OpsbusError(f"copied into {options.redacted()}, but the counts above differ")
    print(f"copied and verified in {clock.monotonic() - started:.1f}s{span}")
    return 0
