"""Whether a process applies its config file: several processes sharing one store (replicas
on PostgreSQL) each hold a copy of opsbus.toml, and must converge on one configuration
instead of overwriting each other at every start or edit.

The decision is made inside the write transaction that would apply the file, against
the record of the file last applied (`AppliedFile`), so it is a compare-and-set: the
same file everywhere is applied once; a different one replaces it only when it is an
operator's edit or, at start-up, not older than the one in effect."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from broker.config.repository import AppliedFile
from broker.timeutil import to_rfc3339


def file_digest(objects: dict[str, list[dict[str, Any]]]) -> str:
    """Digest of a file's objects as validated: what processes share (`[server]` and
    `[plugins]` are each process's own); key order, comments and layout aside."""
    canonical = orjson.dumps(objects, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def file_revision(doc: dict[str, Any], path: str | Path) -> str:
    """`[server] config_revision` when the file names one, else its modification time
    (a stamp). Revisions compare as text: name them so that newer sorts later."""
    server = doc.get("server")
    if isinstance(server, dict) and server.get("config_revision") is not None:
        return str(server["config_revision"])
    mtime = os.stat(path).st_mtime
    return to_rfc3339(datetime.fromtimestamp(mtime, UTC))


@dataclass(frozen=True, slots=True)
class Decision:
    """Apply or not, and what to tell the operator (None: nothing worth a warning)."""

    apply: bool
    warning: str | None = None


def decide(applied: AppliedFile | None, digest: str, revision: str, *, me: str,
           edited: bool) -> Decision:
    """The file with `digest` and `revision` held by process `me`, against the file in
    effect. `edited`: the file changed under a running process (an operator's act,
    always applied); otherwise it is being applied at start-up."""
    if applied is None:
        return Decision(True)
    if applied.digest == digest:
        return Decision(False)  # in effect already (applied here or by another process)
    other = applied.applied_by != me
    if edited:
        return Decision(True, f"config file (revision {revision}) replaces the one"
                              f" {applied.applied_by} applied at {applied.applied_at}"
                              f" (revision {applied.revision}): the last one applied wins"
                        if other else None)
    if revision < applied.revision:
        return Decision(False, f"config file (revision {revision}) is older than the one"
                               f" {applied.applied_by} applied at {applied.applied_at}"
                               f" (revision {applied.revision}): keeping that one")
    return Decision(True, f"config file (revision {revision}) replaces the one"
                          f" {applied.applied_by} applied at {applied.applied_at}"
                          f" (revision {applied.revision})" if other else None)
