"""Dry runs of routing: where events would go, and what a draft route would have done to
the stored history — all without writing anything."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from broker.bus.lineage import over_hop_limit
from broker.bus.log import EventLog
from broker.routing import CompiledRoute, RouteIndex, admits
from broker.todos.queues import Placement, Queue, place

SAMPLE_MATCHES = 50
"""How many matches a history report lists one by one."""


def with_draft(live: Iterable[CompiledRoute], draft: CompiledRoute | None
               ) -> tuple[CompiledRoute, ...]:
    """The live table with `draft` in place of the live route of the same name (or added)."""
    table = [r for r in live if draft is None or r.name != draft.name or r.implicit]
    if draft is not None:
        table.append(draft)
    return tuple(table)


def evaluate_events(routes: Iterable[CompiledRoute], hop_limit: int,
                    events: Iterable[dict[str, Any] | str | None],
                    draft: CompiledRoute | None = None) -> dict[str, Any]:
    """Which routes and targets each event hits. An entry may be a string: the reason an
    event could not be read, reported in its place. Returns `{"results", "summary"}`."""
    table = RouteIndex(tuple(routes))
    results: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            results.append({"index": index, "error": event or "not an event"})
            continue
        result: dict[str, Any] = {
            "index": index, "id": event.get("id"), "source": event.get("source"),
            "type": event.get("type"), "subject": event.get("subject"),
            "routes": [], "targets": [],
        }
        results.append(result)
        if over_hop_limit(event, hop_limit):
            # The broker stores such an event and publishes opsbus.loop.detected instead.
            result["loop"] = True
            continue
        for route in table.match(event):
            result["routes"].append(route.name)
            result["targets"].extend({"route": route.name, "target": f"{kind}:{name}"}
                                     for kind, name in route.targets)
        if draft is not None:
            hit, error = draft_hit(draft, event)
            result["draft"] = hit
            if error is not None:
                result["draft_error"] = error.to_dict()
    return {"results": results, "summary": summarize(results)}


def summarize(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts over `evaluate_events` results: per route, per target, unmatched, invalid."""
    per_route: dict[str, int] = {}
    per_target: dict[str, int] = {}
    events = matched = invalid = loops = 0
    for result in results:
        events += 1
        if "error" in result:
            invalid += 1
            continue
        loops += bool(result.get("loop"))
        matched += bool(result["routes"])
        for name in result["routes"]:
            per_route[name] = per_route.get(name, 0) + 1
        for hit in result["targets"]:
            per_target[hit["target"]] = per_target.get(hit["target"], 0) + 1
    return {"events": events, "matched": matched, "unmatched": events - matched - invalid,
            "invalid": invalid, "loops": loops, "routes": per_route, "targets": per_target}


def draft_hit(draft: CompiledRoute, event: dict[str, Any]) -> tuple[bool, Any]:
    """Whether the draft route matches `event` as the engine would decide it (the bus's
    own events only when it names them), with the filter's evaluation error if any."""
    if not admits(draft, event):
        return False, None
    return draft.filter.evaluate(event)


@dataclass
class _Item:
    key: str
    title: str | None
    first_seq: int
    last_seq: int
    count: int = 1
    resolved_seq: int | None = None
    priority: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "priority": self.priority,
                "count": self.count,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "state": "resolved" if self.resolved_seq else "open",
                "resolved_by_seq": self.resolved_seq}


class _QueueSim:
    """Open/attach/resolve with the engine's own decisions (`place`, `key_of`,
    `title_of`, `priority_of`), on items held in memory only."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.items: list[_Item] = []
        self.open: dict[str, _Item] = {}
        self.attached = self.resolved = self.ignored = 0

    def feed(self, seq: int, event: dict[str, Any]) -> None:
        key = self.queue.key_of(event)
        item = self.open.get(key)
        placement = place(self.queue, event, active=item is not None)
        if placement is Placement.IGNORE:
            self.ignored += 1
        elif placement is Placement.RESOLVE and item is not None:
            item.resolved_seq = seq
            item.last_seq = seq
            self.resolved += 1
            del self.open[key]
        elif placement is Placement.ATTACH and item is not None:
            item.count += 1
            item.last_seq = seq
            # As the engine's attach: title and priority follow the latest event.
            item.title = self.queue.title_of(event)
            item.priority = self.queue.priority_of(event) or item.priority
            self.attached += 1
        else:
            item = _Item(key, self.queue.title_of(event), seq, seq,
                         priority=self.queue.priority_of(event))
            self.items.append(item)
            self.open[key] = item

    def report(self, limit: int) -> dict[str, Any]:
        return {"queue": self.queue.name, "known": self.queue.configured,
                "opened": len(self.items), "attached": self.attached,
                "resolved": self.resolved, "resolving_without_item": self.ignored,
                "grouping": self.queue.group_key.source,  # the dedupkey extension wins
                "items": [i.to_dict() for i in self.items[:limit]],
                "items_truncated": len(self.items) > limit}


async def history(events: EventLog, draft: CompiledRoute, *, since: str, until: str | None,
                  limit: int, queues: Callable[[str], Queue], hop_limit: int,
                  sample: int = SAMPLE_MATCHES) -> dict[str, Any]:
    """What `draft` would have matched among the events received in [since, until), the
    first `limit` of them, and which todo items its queue targets would have opened."""
    sims = {name: _QueueSim(queues(name)) for kind, name in draft.targets if kind == "queue"}
    matches: list[dict[str, Any]] = []
    scanned = matched = errors = 0
    after = 0
    while scanned < limit:
        page = await events.read(after=after, limit=min(1000, limit - scanned),
                                       since=since, until=until)
        if not page:
            break
        for stored in page:
            after = stored.seq
            scanned += 1
            event = stored.event
            if over_hop_limit(event, hop_limit):
                continue
            hit, error = draft_hit(draft, event)
            errors += error is not None
            if not hit:
                continue
            matched += 1
            if len(matches) < sample:
                matches.append({"seq": stored.seq, "type": event.get("type"),
                                "source": event.get("source"),
                                "subject": event.get("subject"), "time": event.get("time")})
            for sim in sims.values():
                sim.feed(stored.seq, event)
        await asyncio.sleep(0)  # a long scan must not starve the event loop
    more = scanned >= limit and bool(await events.read(after=after, limit=1, since=since,
                                                        until=until))
    return {
        "route": draft.name, "since": since, "until": until, "scanned": scanned,
        "truncated": more, "matched": matched, "evaluation_errors": errors,
        "matches": matches, "matches_truncated": matched > len(matches),
        "targets": [f"{k}:{n}" for k, n in draft.targets],
        "queues": [sim.report(sample) for sim in sims.values()],
    }
