"""The durable reference: an aiohttp handler that stores each published event with an
fsynced group commit and nothing else, the floor under what a durable publish costs.

    .venv/bin/python bench/durable_reference.py PORT STORE_FILE

It reads the body, takes the event's source, id and type from it, and hands the row to
one writer task. The writer takes every row waiting and inserts them on the loop into a
store file in the broker's layout (the event rows, their identity keys into the current
period's key table), then commits on a thread (WAL, `synchronous=FULL`) while the loop
goes on reading requests, as the broker does (with its statements on the thread too it
was slower). Each publisher is answered with its seq once its commit is done. A body
that is a JSON array is a batch: its events are stored together.

What the broker does and this does not: validating each event against the CloudEvents
spec, its canonical encoding, the dedupe probe, routing, the live fan-out, metrics and
authentication. It runs on the broker's event loop with the broker's GIL switch
interval, so the two differ only in that work (`ingest.py` prints them side by side).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiohttp import web

from broker.cli.serve import SWITCH_INTERVAL_S
from broker.http.server import new_event_loop
from broker.store.keys import identity_key
from broker.store.sqlite.periods import KeyPeriods
from broker.store.window import DEFAULT_PERIOD_S
from broker.timeutil import to_rfc3339

INSERT_EVENT = ("INSERT INTO events (source, id, type, subject, time, recvtime, correlationid,"
                " causationid, digest, body, idhash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

Row = tuple[Any, ...]
WRITER = web.AppKey("writer", asyncio.Task)
"""The group-commit task, held by the app for as long as it serves."""


class GroupCommit:
    """One writer: rows wait in a list, and each commit takes all of them."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.periods = KeyPeriods(DEFAULT_PERIOD_S)
        self.waiting: list[tuple[list[Row], asyncio.Future[int]]] = []
        self.wake = asyncio.Event()

    def add(self, rows: list[Row]) -> asyncio.Future[int]:
        """The first seq of `rows`, once they are committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((rows, future))
        self.wake.set()
        return future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            group, self.waiting = self.waiting, []
            if not group:
                continue
            try:
                first = insert_rows(self.conn, self.periods,
                                    [row for rows, _ in group for row in rows])
                await loop.run_in_executor(None, self.conn.execute, "COMMIT")
            except sqlite3.Error as exc:  # the group's publishers hear of it, not a hang
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                for _, future in group:
                    future.set_exception(exc)
                continue
            for rows, future in group:
                future.set_result(first)
                first += len(rows)



def insert_rows(conn: sqlite3.Connection, periods: KeyPeriods, rows: list[Row]) -> int:
    """Begin a transaction and insert `rows` (`event_row`s of one recvtime) and their
    identity keys into the current period's key table, opened if it must be; returns the
    first seq. The caller commits."""
    recvtime = rows[0][5]
    conn.execute("BEGIN IMMEDIATE")
    (high,) = conn.execute("SELECT coalesce((SELECT seq FROM sqlite_sequence"
                           " WHERE name = 'events'), 0)").fetchone()
    table = periods.current(conn, recvtime) or periods.open(conn, recvtime, high + 1).name
    conn.executemany(INSERT_EVENT, rows)
    conn.executemany(f"INSERT INTO {table} (key, kind, seq) VALUES (?, 0, ?)",
                     [(row[-1], high + n) for n, row in enumerate(rows, 1)])
    return int(high) + 1


def event_row(event: dict[str, Any], recvtime: str) -> Row:
    """The event's row as the broker stores it (its digest empty, as the store's is)."""
    source, id = str(event["source"]), str(event["id"])
    return (source, id, event["type"], event.get("subject"), event.get("time"), recvtime,
            None, None, b"", orjson.dumps(event), identity_key(source, id))


def serve(port: int, path: Path) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    writer = GroupCommit(path)

    async def publish(request: web.Request) -> web.Response:
        parsed = orjson.loads(await request.read())
        recvtime = to_rfc3339(datetime.now(UTC))
        events = parsed if isinstance(parsed, list) else [parsed]
        first = await writer.add([event_row(event, recvtime) for event in events])
        answers = [{"seq": first + n, "id": event["id"], "duplicate": False}
                   for n, event in enumerate(events)]
        return web.Response(body=orjson.dumps(answers if isinstance(parsed, list)
                                              else answers[0]),
                            status=201, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def start_writer(app: web.Application) -> None:
        app[WRITER] = asyncio.create_task(writer.run())

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/events", publish)
    app.router.add_get("/readyz", ready)
    app.on_startup.append(start_writer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=new_event_loop())


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
