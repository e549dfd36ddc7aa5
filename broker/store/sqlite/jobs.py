"""SQLite statements for API action jobs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from broker.actions.model import ActionJob, ClaimedJob, JobState
from broker.actions.repository import JobRepository, JobWrites
from broker.store.sqlite.connections import ReaderPool
from broker.store.sqlite.delivery import events_by_seq, new_lease
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction
from broker.timeutil import later

JOB_COLUMNS = ("id, action, seq, state, attempts, next_at, lease, params, todo_id, operator,"
               " result_seq, last_error, created_at, updated_at")


def row_to_job(row: Sequence[Any]) -> ActionJob:
    return ActionJob(row[0], row[1], row[2], JobState(row[3]), row[4], row[5], row[6],
                     orjson.loads(row[7]) if row[7] else None, row[8], row[9], row[10],
                     row[11], row[12], row[13])


class SqliteJobWrites(JobWrites):
    """Action-job writes on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def add(self, action: str, seq: int, now: str, *,
                  params: dict[str, Any] | None = None, todo_id: int | None = None,
                  operator: str | None = None) -> int:
        stamp = now
        (job_id,) = self.conn.execute(
            "INSERT INTO action_jobs (action, seq, state, next_at, params, todo_id, operator,"
            " created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?) RETURNING id",
            (action, seq, now, orjson.dumps(params) if params is not None else None, todo_id,
             operator, stamp, stamp)).fetchone()
        return int(job_id)

    async def claim(self, limit: int, now: str, lease_s: float,
                    actions: Sequence[str] | None = None) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        where = "state IN ('pending', 'running') AND next_at <= ?"
        params: list[Any] = [now]
        if actions is not None:
            if not actions:
                return []
            where += f" AND action IN ({', '.join('?' * len(actions))})"
            params.extend(actions)
        rows = self.conn.execute(
            f"SELECT id, attempts FROM action_jobs WHERE {where} ORDER BY next_at, id LIMIT ?",
            (*params, limit)).fetchall()
        stamp = now
        expires = later(now, lease_s)
        jobs = []
        for job_id, attempts in rows:
            updated = self.conn.execute(
                f"UPDATE action_jobs SET state = 'running', attempts = ?, lease = ?,"
                f" next_at = ?, updated_at = ? WHERE id = ? RETURNING {JOB_COLUMNS}",
                (attempts + 1, new_lease(job_id, attempts + 1), expires, stamp, job_id),
            ).fetchone()
            jobs.append(row_to_job(updated))
        events = events_by_seq(self.conn, [j.seq for j in jobs])
        return [ClaimedJob(j, events[j.seq]) for j in jobs]

    async def finish(self, job_id: int, lease: str, state: JobState, now: str, *,
                     next_at: str | None = None, result_seq: int | None = None,
                     error: str | None = None) -> ActionJob | None:
        row = self.conn.execute(
            f"UPDATE action_jobs SET state = ?, lease = NULL, next_at = ?,"
            f" result_seq = coalesce(?, result_seq), last_error = ?, updated_at = ?"
            f" WHERE id = ? AND state = 'running' AND lease = ? RETURNING {JOB_COLUMNS}",
            (state.value, next_at if next_at is not None else now, result_seq, error,
             now, job_id, lease)).fetchone()
        return row_to_job(row) if row else None


class SqliteJobs(JobRepository):
    """Action jobs in `action_jobs`; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteJobWrites:
        return SqliteJobWrites(connection_of(tx))

    async def get(self, job_id: int) -> ActionJob | None:
        row = await self._readers.fetchone(
            f"SELECT {JOB_COLUMNS} FROM action_jobs WHERE id = ?", (job_id,))
        return row_to_job(row) if row else None

    async def page(self, action: str, after: int = 0, limit: int = 100) -> list[ActionJob]:
        rows = await self._readers.fetchall(
            f"SELECT {JOB_COLUMNS} FROM action_jobs WHERE action = ? AND id > ?"
            " ORDER BY id LIMIT ?", (action, after, limit))
        return [row_to_job(r) for r in rows]

    async def next_due(self) -> str | None:
        row = await self._readers.fetchone(
            "SELECT min(next_at) FROM action_jobs WHERE state IN ('pending', 'running')")
        return str(row[0]) if row and row[0] is not None else None
