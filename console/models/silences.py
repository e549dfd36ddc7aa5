"""Active silences as the console uses them: which listed items they cover, and what a
new silence would match before it is created."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from broker.client import OpsbusClient
from broker.errors import OpsbusError
from console.models.items import Item
from console.models.observable import Observable

Silence = dict[str, Any]
VERDICTS = 5000
"""Remembered answers of "does filter silence S match event E" (both never change)."""
PREVIEW_ITEMS = 1000
PREVIEW_EVENTS = 100


def matcher_text(matcher: dict[str, Any]) -> str:
    if "key" in matcher:
        return f"key ~ {matcher['key']}"
    spec = matcher.get("filter")
    if isinstance(spec, dict) and set(spec) == {"sql"}:
        return str(spec["sql"])
    return str(spec)


def parse_pattern(text: str) -> dict[str, Any]:
    """What the silence dialog takes: a group-key glob, or `sql: EXPR` for an event filter."""
    text = text.strip()
    if text.lower().startswith("sql:"):
        return {"filter": text[4:].strip()}
    return {"key": text}


def key_matches(silence: Silence, item: Item) -> bool:
    """The broker's rule for key silences: the queue (if any) and a glob on the key."""
    matcher = silence.get("matcher") or {}
    if silence.get("queue") not in (None, item.get("queue")):
        return False
    return "key" in matcher and fnmatchcase(str(item["key"]), str(matcher["key"]))


@dataclass
class Preview:
    """What a silence would match now: listed items, and recent events for a filter."""

    items: list[Item] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


class SilencesModel(Observable):
    """The active silences; `covering(item)` names the one muting an item's key."""

    def __init__(self) -> None:
        super().__init__()
        self.active: list[Silence] = []
        self.available = True
        self.loaded = False
        """The active silences were read at least once (marks can be trusted)."""
        self._verdicts: OrderedDict[tuple[int, int], bool] = OrderedDict()

    async def load(self, client: OpsbusClient) -> None:
        try:
            self.active = [s for s in await client.silences() if s.get("active")]
        except OpsbusError:
            self.available = False
            return
        self.available = self.loaded = True
        self.changed()

    def covering(self, item: Item) -> Silence | None:
        """The active silence that covers the item: its key matches, or its filter
        matched the item's latest event (as checked by the broker)."""
        for silence in self.active:
            if key_matches(silence, item):
                return silence
            verdict = self._verdicts.get((int(silence["id"]), int(item["event_seq"])))
            if verdict and silence.get("queue") in (None, item.get("queue")):
                return silence
        return None

    def filter_silences(self) -> list[Silence]:
        return [s for s in self.active if "filter" in (s.get("matcher") or {})]

    async def check_filters(self, client: OpsbusClient, events: dict[int, dict[str, Any]]
                            ) -> None:
        """Ask the broker whether each filter silence matches these events (by seq)."""
        changed = False
        for silence in self.filter_silences():
            for seq, event in events.items():
                key = (int(silence["id"]), seq)
                if key in self._verdicts:
                    continue
                try:
                    answer = await client.evaluate(event, filter=silence["matcher"]["filter"])
                except OpsbusError:
                    continue
                self._verdicts[key] = answer.get("value") is True
                changed = True
                while len(self._verdicts) > VERDICTS:
                    self._verdicts.popitem(last=False)
        if changed:
            self.changed()

    @staticmethod
    async def preview(client: OpsbusClient, matcher: dict[str, Any], queue: str | None
                      ) -> Preview:
        """Active items a new silence would cover, and for a filter the recent events it
        matches (a silence stops new items; existing ones stay, marked)."""
        try:
            page = await client.todos(queue=queue, state="active", limit=PREVIEW_ITEMS)
            items: list[Item] = page["items"]
            if "key" in matcher:
                probe = {"matcher": matcher, "queue": queue}
                return Preview([i for i in items if key_matches(probe, i)])
            found = await client.events(limit=PREVIEW_EVENTS, order="desc",
                                        filter=str(matcher["filter"]))
        except OpsbusError as exc:
            return Preview(problem=exc.detail)
        events = list(found["events"])
        seqs = {int(e["seq"]) for e in events}
        return Preview([i for i in items if int(i["event_seq"]) in seqs], events)
