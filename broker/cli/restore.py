"""`opsbus restore FILE`: put a backup in place as a stopped broker's store."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from broker.cli import json_option


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "restore", help="restore a backup into a stopped broker's data directory",
        description="Check FILE (an `opsbus backup`), then make it the store of the data"
                    " directory, upgrading its schema if an earlier release wrote it. The"
                    " broker using the directory must be stopped. A store already there is"
                    " kept beside it as opsbus.db.before-restore-<time> (needs --force).",
        epilog="Example: systemctl stop opsbus && opsbus restore --data-dir"
               " /var/lib/opsbus backup.db && systemctl start opsbus",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the backup to restore")
    parser.add_argument("--data-dir", help="the data directory (default: the [server]"
                                           " data_dir setting, OPSBUS_DATA_DIR, .opsbus)")
    parser.add_argument("--force", action="store_true",
                        help="replace a store the data directory already holds")
    json_option(parser)
    parser.set_defaults(func=restore)


def _stamp() -> str:
    from broker.clock import SystemClock

    return SystemClock().now().strftime("%Y%m%dT%H%M%SZ")


def set_aside(db: Path) -> Path | None:
    """Move the store (and any log beside it) out of the way; where it went. The log is
    folded into the database first so the kept file is complete on its own."""
    kept: Path | None = None
    stamp = _stamp()
    if db.exists():
        from broker.store.sqlite.maintenance import fold_wal

        fold_wal(db)
        kept = db.with_name(f"{db.name}.before-restore-{stamp}")
        db.replace(kept)
    # A log without its database (or one left after the checkpoint) must not meet the
    # restored file: SQLite would replay its frames into the wrong database.
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        wal.replace(db.with_name(f"{db.name}-wal.before-restore-{stamp}"))
    db.with_name(db.name + "-shm").unlink(missing_ok=True)
    return kept


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def restore(args: argparse.Namespace) -> int:
    from broker.errors import BadRequest, Conflict, IncompatibleStore, NotFound
    from broker.settings import resolve_settings
    from broker.store.sqlite import SqliteBackend, lock
    from broker.store.sqlite.maintenance import check_file, inspect_file, refuse_newer_schema

    source: Path = args.file
    if not source.is_file():
        raise NotFound(f"{source}: no such backup file")
    settings = resolve_settings({"data_dir": args.data_dir})
    db = settings.db_path
    version, events, first, last = inspect_file(source)
    refuse_newer_schema(version, source)
    report = check_file(source)
    if not report.ok:
        problems = "; ".join(f"{f.check}: {f.detail}" for f in report.findings[:5])
        raise IncompatibleStore(f"{source} fails its integrity check, not restoring it:"
                                f" {problems}")
    lock.acquire(db, "restoring into it")
    try:
        if db.exists() and not args.force:
            raise Conflict(f"{settings.data_dir} already holds a store ({db}); pass --force"
                           " to replace it (it is kept beside it as"
                           f" {db.name}.before-restore-<time>)")
        if db.resolve() == source.resolve():
            raise BadRequest(f"{source} is the data directory's own store")
        kept = set_aside(db)
        incoming = db.with_name(db.name + ".restoring")
        shutil.copyfile(source, incoming)
        _fsync(incoming)
        incoming.replace(db)
        _fsync(db.parent)
        store = SqliteBackend(db)  # opening applies the migrations of this release
        await store.open()
        await store.close()
    finally:
        lock.release(db)
    from broker.store.sqlite.maintenance import latest_schema_version

    summary = {"file": str(source), "data_dir": settings.data_dir, "events": events,
               "first_seq": first, "last_seq": last, "schema_version_before": version,
               "schema_version": latest_schema_version(),
               "previous_store": str(kept) if kept else None}
    if args.json:
        from broker.cli.output import print_json

        print_json(summary)
    else:
        span = f"seq {first}..{last}" if events else "no events"
        upgraded = (f", schema upgraded {version} -> {summary['schema_version']}"
                    if version != summary["schema_version"] else "")
        print(f"restored {source} into {settings.data_dir}: {events:,} events ({span})"
              f"{upgraded}" + (f"; the previous store is kept as {kept}" if kept else ""))
    return 0
