"""The store as the checks see it, read through the public API once a run is quiet."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.invariants import scenario
from tests.invariants.api import Api

PULL = ("jobs", "audit")
LOOP_TYPE = "opsbus.loop.detected"


def starts_chain(event: dict[str, Any], ids: Container[str]) -> bool:
    """A root: published without a cause, or by an operator's act (a re-emit starts a
    chain of its own while keeping the lineage attributes)."""
    cause = event.get("causationid")
    return cause is None or str(cause) not in ids or "reemittedfrom" in event


@dataclass
class Snapshot:
    events: list[dict[str, Any]]
    """Every stored event in seq order: {seq, recvtime, routes, event}."""
    targets: dict[int, list[dict[str, Any]]]
    """seq -> the target hits recorded with the event: {route, target, detail?}."""
    items: dict[int, dict[str, Any]]
    """todo id -> the item with its events and history."""
    deliveries: dict[str, list[dict[str, Any]]]
    """subscription -> its deliveries with their attempts."""
    item_seqs: dict[int, set[int]]
    """todo id -> the seqs of every event grouped into it."""
    by_seq: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    children: dict[str, list[int]] = field(default_factory=dict)
    """event id -> seqs of the events it caused (causationid)."""
    seq_of_id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for stored in self.events:
            event = stored["event"]
            self.by_seq[stored["seq"]] = stored
            self.seq_of_id[str(event["id"])] = stored["seq"]
            self.by_key.setdefault((event["source"], event["id"]), []).append(stored["seq"])
            cause = event.get("causationid")
            if cause is not None:
                self.children.setdefault(str(cause), []).append(stored["seq"])

    def root_of(self, seq: int) -> int:
        """The seq of the root event `seq` descends from (see `starts_chain`)."""
        while True:
            event = self.by_seq[seq]["event"]
            if starts_chain(event, self.seq_of_id):
                return seq
            seq = self.seq_of_id[str(event["causationid"])]

    def family(self, root: int) -> list[int]:
        """The seqs of every event descending from root `root` (its chain, not the
        chains that operators' acts within it started)."""
        found: list[int] = []
        todo = [root]
        while todo:
            seq = todo.pop()
            children = [c for c in self.children.get(str(self.by_seq[seq]["event"]["id"]), [])
                        if not starts_chain(self.by_seq[c]["event"], self.seq_of_id)]
            found += children
            todo += children
        return found

    def caused(self, seq: int, type: str | None = None) -> list[dict[str, Any]]:
        """The events directly caused by event `seq` (of `type`, if given)."""
        event_id = self.by_seq[seq]["event"]["id"]
        found = [self.by_seq[s] for s in self.children.get(str(event_id), [])]
        return [s for s in found if type is None or s["event"]["type"] == type]


async def _gather(limit: int, calls: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


API_ITEM_EVENTS = 1000
"""The API lists an item's latest 1000 events; beyond that the store file is asked."""


def _item_seqs_from_file(db: Path, todo_id: int) -> set[int]:
    """Read-only, from the SQLite file: what the API cannot list."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT seq FROM todo_events WHERE todo_id = ?", (todo_id,))
        return {int(r[0]) for r in rows}


async def _item_seqs_from_postgres(url: str, todo_id: int) -> set[int]:
    """The same, from the PostgreSQL store the replicas share."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT seq FROM todo_events WHERE todo_id = $1", todo_id)
    finally:
        await conn.close()
    return {int(r[0]) for r in rows}


async def take(api: Api) -> Snapshot:
    events = await api.events()
    details = await _gather(8, [api.ok("GET", f"/v1/events/{e['seq']}") for e in events])
    targets = {d["seq"]: d["targets"] for d in details}
    ids: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1000"}
        if cursor:
            params["after"] = cursor
        page = await api.ok("GET", "/v1/todos", params=params)
        ids += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    items = {i["id"]: i for i in await _gather(8, [api.ok("GET", f"/v1/todos/{i}")
                                                    for i in ids])}
    item_seqs = {}
    for todo_id, item in items.items():
        if len(item["events"]) < API_ITEM_EVENTS:
            item_seqs[todo_id] = {e["seq"] for e in item["events"]}
        elif api.store_url is not None:
            item_seqs[todo_id] = await _item_seqs_from_postgres(api.store_url, todo_id)
        else:
            item_seqs[todo_id] = await asyncio.to_thread(
                _item_seqs_from_file, api.broker.data_dir / "opsbus.db", todo_id)
    deliveries: dict[str, list[dict[str, Any]]] = {}
    for name in [h.name for h in scenario.HOOKS] + list(PULL):
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await api.ok("GET", f"/v1/subscriptions/{name}/deliveries",
                                params={"after": str(after), "limit": "1000"})
            rows += page["deliveries"]
            if not page["next"]:
                break
            after = page["next"]
        deliveries[name] = rows
    return Snapshot(events, targets, items, deliveries, item_seqs)
