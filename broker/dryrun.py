"""Dry runs of routing: where events would go, and what a draft route would have done to
the stored history — all without writing anything."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.errors import OpsbusError
from broker.filters import Filter, compile_filter
from broker.routing import CompiledRoute, hop_count
from broker.store.base import Store
from broker.templates import Template, compile_template

DEFAULT_GROUP_KEY = "{source}/{subject}"
"""Grouping used when a queue is unknown or has no template (dedupkey wins when set)."""
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
    table = tuple(routes)
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
        if hop_count(event.get("hopcount")) > hop_limit:
            # The broker stores such an event and publishes opsbus.loop.detected instead.
            result["loop"] = True
            continue
        for route in table:
            if route.filter.matches(event):
                result["routes"].append(route.name)
                result["targets"].extend({"route": route.name, "target": f"{kind}:{name}"}
                                         for kind, name in route.targets)
        if draft is not None:
            hit, error = draft.filter.evaluate(event)
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


@dataclass
class QueueModel:
    """Just enough of a queue to predict its items: the group key, title and the
    filter that resolves an item instead of opening one."""

    name: str
    group_key: Template | None = None
    title: Template | None = None
    resolve: Filter | None = None
    known: bool = True

    def key(self, event: dict[str, Any]) -> str:
        if self.group_key is not None:
            return self.group_key.render(event)
        if event.get("dedupkey"):
            return str(event["dedupkey"])
        return f"{event.get('source')}/{event.get('subject') or ''}"


def queue_model(name: str, spec: dict[str, Any] | None) -> QueueModel:
    """A QueueModel from a queue's config object (None: an unknown queue)."""
    if spec is None:
        return QueueModel(name, known=False)
    model = QueueModel(name)
    # Best effort: a template the todos validator accepts but this cannot read just
    # falls back to the default grouping rather than failing the whole preview.
    for attr, key in (("group_key", "group_key"), ("title", "title")):
        if isinstance(spec.get(key), str):
            try:
                setattr(model, attr, compile_template(spec[key], key))
            except OpsbusError:
                pass
    if spec.get("resolve_filter"):
        try:
            model.resolve = compile_filter(spec["resolve_filter"])
        except OpsbusError:
            pass
    return model


@dataclass
class _Item:
    key: str
    title: str | None
    first_seq: int
    last_seq: int
    count: int = 1
    resolved_seq: int | None = None
    events: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "count": self.count,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "state": "resolved" if self.resolved_seq else "open",
                "resolved_by_seq": self.resolved_seq}


class _QueueSim:
    """Open/attach/resolve as the todos engine does, on a copy of nothing but memory."""

    def __init__(self, model: QueueModel) -> None:
        self.model = model
        self.items: list[_Item] = []
        self.open: dict[str, _Item] = {}
        self.attached = self.resolved = self.ignored = 0

    def feed(self, seq: int, event: dict[str, Any]) -> None:
        key = self.model.key(event)
        item = self.open.get(key)
        if self.model.resolve is not None and self.model.resolve.matches(event):
            if item is None:
                self.ignored += 1  # a resolving event never opens an item
            else:
                item.resolved_seq = seq
                item.last_seq = seq
                self.resolved += 1
                del self.open[key]
            return
        if item is not None:
            item.count += 1
            item.last_seq = seq
            self.attached += 1
            return
        title = self.model.title.render(event) if self.model.title is not None else None
        item = _Item(key, title, seq, seq)
        self.items.append(item)
        self.open[key] = item

    def report(self, limit: int) -> dict[str, Any]:
        return {"queue": self.model.name, "known": self.model.known,
                "opened": len(self.items), "attached": self.attached,
                "resolved": self.resolved, "resolving_without_item": self.ignored,
                "grouping": self.model.group_key.source if self.model.group_key
                else f"dedupkey or {DEFAULT_GROUP_KEY}",
                "items": [i.to_dict() for i in self.items[:limit]],
                "items_truncated": len(self.items) > limit}


async def history(store: Store, draft: CompiledRoute, *, since: str, until: str | None,
                  limit: int, queues: Callable[[str], QueueModel], hop_limit: int,
                  sample: int = SAMPLE_MATCHES) -> dict[str, Any]:
    """What `draft` would have matched among the events received in [since, until), the
    first `limit` of them, and which todo items its queue targets would have opened."""
    sims = {name: _QueueSim(queues(name)) for kind, name in draft.targets if kind == "queue"}
    matches: list[dict[str, Any]] = []
    scanned = matched = errors = 0
    after = 0
    while scanned < limit:
        page = await store.read_events(after=after, limit=min(1000, limit - scanned),
                                       since=since, until=until)
        if not page:
            break
        for stored in page:
            after = stored.seq
            scanned += 1
            event = stored.event
            if hop_count(event.get("hopcount")) > hop_limit:
                continue
            hit, error = draft.filter.evaluate(event)
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
    more = scanned >= limit and bool(await store.read_events(after=after, limit=1, since=since,
                                                                until=until))
    return {
        "route": draft.name, "since": since, "until": until, "scanned": scanned,
        "truncated": more, "matched": matched, "evaluation_errors": errors,
        "matches": matches, "matches_truncated": matched > len(matches),
        "targets": [f"{k}:{n}" for k, n in draft.targets],
        "queues": [sim.report(sample) for sim in sims.values()],
    }
