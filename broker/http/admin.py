"""`/v1/admin/*`: online backup and store checks of the running broker (admin only)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from pathlib import Path

from aiohttp import web

from broker.auth.principal import principal_of
from broker.errors import Forbidden, InsufficientStorage
from broker.http.auth import missing_scope
from broker.http.util import bool_param, broker_of, json_response

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
SNAPSHOT_PREFIX = ".backup-"


def require_admin(request: web.Request) -> None:
    """Backups copy every event and secret-bearing configuration: admin tokens only.
    (The authentication middleware already asks `admin` of `/v1/admin/*`; this keeps the
    rule beside the handler should the route table change.)"""
    principal = principal_of(request)
    if not principal.has("admin"):
        raise Forbidden(missing_scope(principal, "admin"), scope="admin")


def snapshot_path(data_dir: Path) -> Path:
    """A name no concurrent backup shares; swept at start if a crash leaves it."""
    return data_dir / f"{SNAPSHOT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}.db"


def ensure_room(data_dir: Path, db_path: Path) -> None:
    """507 before starting when the snapshot cannot fit beside the store."""
    need = sum(p.stat().st_size for p in (db_path, db_path.with_name(db_path.name + "-wal"))
               if p.exists())
    free = shutil.disk_usage(data_dir).free
    if free < need:
        raise InsufficientStorage(
            f"a backup snapshot needs about {need // 2**20 + 1} MiB beside the store in"
            f" {data_dir} and only {free // 2**20} MiB are free: free some space, or run"
            f" `opsbus backup --data-dir {data_dir} FILE` on the broker's host to write the"
            f" backup straight to another disk", needed_bytes=need, free_bytes=free)


@routes.post("/v1/admin/backup")
async def backup(request: web.Request) -> web.StreamResponse:
    """A consistent online backup of the store, answered as the SQLite file itself.

    The snapshot is taken into the data directory (one read transaction: every event
    acknowledged before the request is in it), then streamed and deleted. Headers
    describe it: `Opsbus-Backup-Events`, `-First-Seq`, `-Last-Seq`, `-Schema-Version`."""
    require_admin(request)
    broker = broker_of(request)
    data_dir = Path(broker.settings.data_dir)
    ensure_room(data_dir, broker.settings.db_path)
    target = snapshot_path(data_dir)
    try:
        try:
            result = await broker.store.backup(target)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC: the disk filled up while copying
                raise InsufficientStorage(f"the disk holding {data_dir} filled up while"
                                          " taking the backup snapshot") from None
            raise
        log.info("backup snapshot of %s events (last seq %s), %s bytes", result.events,
                 result.last_seq, result.bytes)
        response = web.StreamResponse(headers={
            "Content-Type": "application/vnd.sqlite3",
            "Content-Disposition": f'attachment; filename="opsbus-{result.last_seq}.db"',
            "Opsbus-Backup-Events": str(result.events),
            "Opsbus-Backup-First-Seq": str(result.first_seq or 0),
            "Opsbus-Backup-Last-Seq": str(result.last_seq),
            "Opsbus-Backup-Schema-Version": str(result.schema_version),
        })
        response.content_length = result.bytes
        await response.prepare(request)
        with open(target, "rb") as fh:
            target.unlink()  # the open file stays readable; nothing is left if we stop
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        target.unlink(missing_ok=True)


@routes.post("/v1/admin/store/check")
async def check(request: web.Request) -> web.Response:
    """The engine's integrity check and opsbus's consistency checks, on one snapshot;
    `?quick=true` skips the index cross-checks. 200 with `ok: false` when it found
    problems (the check itself worked)."""
    require_admin(request)
    quick = bool_param(request, "quick")
    report = await broker_of(request).store.check(quick=quick)
    return json_response(report.to_dict())
