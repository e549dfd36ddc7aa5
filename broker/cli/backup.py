"""`opsbus backup FILE`: a consistent copy of the store taken while the broker serves."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from broker.cli import client_options, json_option
from broker.cli.progress import ProgressLine, human_bytes


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "backup", help="back up the store (online)",
        description="Write a consistent backup of the store to FILE while the broker keeps"
                    " serving: every event acknowledged before the backup began is in it."
                    " By default the running broker takes it (POST /v1/admin/backup, an"
                    " admin token) and streams it here; with --data-dir the database file"
                    " is read directly (a stopped broker, or on the broker's own host).",
        epilog="Example: opsbus backup /backups/opsbus-$(date +%%F).db",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the backup file to write")
    parser.add_argument("--data-dir", help="read this data directory's database directly"
                                           " instead of asking the broker")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the quick check of the written file")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="report progress even when stderr is not a terminal")
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=backup)


async def backup(args: argparse.Namespace) -> int:
    from broker.errors import BadRequest, IncompatibleStore

    target: Path = args.file
    if target.exists() and not args.force:
        raise BadRequest(f"{target} exists; pass --force to overwrite it")
    if target.is_dir():
        raise BadRequest(f"{target} is a directory; name the backup file to write")
    target.parent.mkdir(parents=True, exist_ok=True)
    progress = ProgressLine("backup", enabled=False if args.json else args.progress)
    started = time.perf_counter()
    if args.data_dir is not None:
        how = f"data directory {args.data_dir}"
        await direct_backup(Path(args.data_dir), target, progress)
    else:
        how = f"broker at {args.url}"
        await remote_backup(args, target, progress)
    progress.done()
    from broker.store.sqlite.maintenance import check_file, inspect_file

    version, events, first, last = inspect_file(target)
    checked = False
    if args.verify:
        report = check_file(target, quick=True)
        if not report.ok:
            problems = "; ".join(f.detail for f in report.findings[:3])
            raise IncompatibleStore(f"the backup written to {target} fails its check:"
                                    f" {problems}")
        checked = True
    size = target.stat().st_size
    summary = {"file": str(target), "bytes": size, "events": events,
               "first_seq": first, "last_seq": last, "schema_version": version,
               "seconds": round(time.perf_counter() - started, 3), "verified": checked,
               "from": how}
    if args.json:
        from broker.cli.output import print_json

        print_json(summary)
    else:
        span = f"seq {first}..{last}" if events else "no events"
        print(f"backup written to {target}: {events:,} events ({span}), schema"
              f" {version}, {human_bytes(size)} in {summary['seconds']:.1f} s"
              f" from the {how}" + (", quick check ok" if checked else ""))
    return 0


async def direct_backup(data_dir: Path, target: Path, progress: ProgressLine) -> None:
    import asyncio

    from broker.errors import NotFound
    from broker.settings import Settings
    from broker.store.sqlite.maintenance import backup_file

    db = Settings(data_dir=str(data_dir)).db_path
    if not db.exists():
        raise NotFound(f"{data_dir} holds no opsbus store (no {db.name})")
    await asyncio.to_thread(backup_file, db, target, progress.pages)


async def remote_backup(args: argparse.Namespace, target: Path, progress: ProgressLine
                        ) -> None:
    import os

    from broker.client import BrokerUnreachable, OpsbusClient

    partial = target.with_name(target.name + ".partial")
    try:
        async with OpsbusClient(args.url, args.token) as client:
            with open(partial, "wb") as out:
                await client.download("/v1/admin/backup", out, progress.bytes)
                out.flush()
                os.fsync(out.fileno())
        partial.replace(target)
    except BrokerUnreachable as exc:
        raise BrokerUnreachable(f"{exc.detail} (a stopped broker is backed up from its"
                                " files: opsbus backup --data-dir DIR FILE)") from None
    finally:
        partial.unlink(missing_ok=True)
