"""The Queues view's state: queues with counts, the chosen queue's items, how they are
filtered, sorted and marked. No widget code: the Queues screen observes it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.client import OpsbusClient
from broker.errors import OpsbusError
from console.models.items import SORTS, Item, KeyFields, key_fields, sort_items
from console.models.observable import Observable

ALL_QUEUES = "*"
"""The pseudo-queue listing the items of every queue (the on-call home)."""
VIEWS = ("all", "unclaimed", "mine", "snoozed", "resolved")
"""Item lists: all = open + claimed (not snoozed)."""
MAX_ITEMS = 500
"""Items held per queue and view; the list says when there are more."""
FIELDS_CACHE = 2000
"""Key fields kept per event seq (events never change, so they are fetched once)."""


def view_params(view: str, operator: str) -> dict[str, Any]:
    """`GET /v1/todos` parameters for a view."""
    return {"all": {"state": "active"}, "unclaimed": {"state": "open"},
            "mine": {"state": "claimed", "owner": operator}, "snoozed": {"state": "snoozed"},
            "resolved": {"state": "resolved"}}[view]


def in_view(item: Item, view: str, operator: str, now: str) -> bool:
    """Whether an item (as announced by an audit event) belongs in the view."""
    snoozed = bool(item.get("snoozed_until")) and str(item["snoozed_until"]) > now
    state = item.get("state")
    if view == "resolved":
        return state == "resolved"
    if view == "snoozed":
        return state != "resolved" and snoozed
    if snoozed:
        return False
    if view == "unclaimed":
        return state == "open"
    if view == "mine":
        return state == "claimed" and item.get("owner") == operator
    return state in ("open", "claimed")


def matches_search(item: Item, needle: str, fields: KeyFields | None) -> bool:
    text = f"{item['key']} {item['title']} {item.get('owner') or ''} {item['queue']}"
    if fields is not None:
        text += " " + fields.line()
    return needle.lower() in text.lower()


class QueuesModel(Observable):
    """Queues, the selected queue (or every queue), its items and the reader's choices."""

    def __init__(self, operator: str, now: Callable[[], datetime],
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.operator = operator
        self.now = now
        """The clock ages are shown at (tests fix it)."""
        self.wall = wall
        """The real time, which the broker's ages are counted at."""
        self.queues: dict[str, dict[str, Any]] = {}
        self.queue: str = ALL_QUEUES
        self.view = "all"
        self.search = ""
        self.sort = "priority"
        self.reverse = False
        self.items: dict[int, Item] = {}
        self.more = False
        """The broker holds more items in this view than were loaded."""
        self.marked: set[int] = set()
        """Items selected (space) for a bulk claim, resolve or silence."""
        self.status = "loading"
        """loading, ready, or error (then `problem` says why)."""
        self.problem: str | None = None
        self.fields: OrderedDict[int, KeyFields] = OrderedDict()
        self._shown_fields: dict[int, KeyFields] = {}
        self._visible: list[Item] | None = None

    # -- what the screen shows ----------------------------------------------------------
    def visible(self) -> list[Item]:
        """The items in the list's order, narrowed by the search."""
        if self._visible is None:
            needle = self.search.strip()
            items = [i for i in self.items.values()
                     if not needle or matches_search(i, needle, self.fields.get(i["event_seq"]))]
            self._visible = sort_items(items, self.sort, self.reverse)
        return self._visible

    def fields_of(self, item: Item) -> KeyFields | None:
        """The key fields of the item's latest event; until those are fetched, the ones
        last shown for the item (an alert that fires again says the same, and the row
        does not blink to "…" and back with each event)."""
        found = self.fields.get(int(item["event_seq"]))
        if found is None:
            return self._shown_fields.get(item["id"])
        if len(self._shown_fields) > FIELDS_CACHE:
            self._shown_fields = {i: f for i, f in self._shown_fields.items()
                                  if i in self.items}
        self._shown_fields[item["id"]] = found
        return found

    def missing_fields(self, limit: int) -> list[int]:
        """Event seqs of the first `limit` listed items whose key fields are not known."""
        wanted = []
        for item in self.visible()[:limit]:
            seq = int(item["event_seq"])
            if seq not in self.fields:
                wanted.append(seq)
        return wanted

    def oldest_age_s(self, name: str) -> float | None:
        queue = self.queues.get(name)
        moment = queue.get("_oldest_at") if queue else None
        return None if moment is None else (self.now() - moment).total_seconds()

    # -- changes ------------------------------------------------------------------------
    def _changed(self) -> None:
        self._visible = None
        self.changed()

    def select_queue(self, name: str) -> None:
        """Another queue: its own search and marks (they do not carry across)."""
        if name != self.queue:
            self.queue = name
            self.search = ""
            self.marked.clear()
            self.items = {}
            self.status = "loading"
            self._changed()

    def set_view(self, view: str) -> None:
        if view != self.view:
            self.view = view
            self.marked.clear()
            self.items = {}
            self.status = "loading"
            self._changed()

    def set_search(self, text: str) -> None:
        if text != self.search:
            self.search = text
            self._changed()

    def set_sort(self, key: str) -> None:
        """Sort by `key`; the same key again reverses the order."""
        if key not in SORTS:
            raise ValueError(f"unknown sort {key!r}")
        self.reverse = not self.reverse if key == self.sort else False
        self.sort = key
        self._changed()

    def toggle_mark(self, item_id: int) -> None:
        if item_id in self.marked:
            self.marked.discard(item_id)
        elif item_id in self.items:
            self.marked.add(item_id)
        self._changed()

    def clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self._changed()

    def apply(self, item: Item) -> bool:
        """Put a newer version of an item in (or out of) the list; True if it changed."""
        known = self.items.get(item["id"])
        if known is not None and known["updated_at"] > item["updated_at"]:
            return False
        now = self.now().strftime("%Y-%m-%dT%H:%M:%S")
        if (self.queue in (ALL_QUEUES, item.get("queue"))
                and in_view(item, self.view, self.operator, now)):
            self.items[item["id"]] = item
            self._trim()
            self._visible = None
            return True
        self.marked.discard(item["id"])
        if self.items.pop(item["id"], None) is not None:
            self._visible = None
            return True
        return False

    def _trim(self) -> None:
        """Memory stays bounded in an item storm: the least urgent, newest go first."""
        if len(self.items) > MAX_ITEMS:
            keep = sort_items(self.items.values(), "priority")[:MAX_ITEMS]
            self.items = {i["id"]: i for i in keep}
            self.marked &= set(self.items)
            self.more = True

    def remember_fields(self, seq: int, fields: KeyFields) -> None:
        self.fields[seq] = fields
        self.fields.move_to_end(seq)
        while len(self.fields) > FIELDS_CACHE:
            self.fields.popitem(last=False)

    # -- loading (the screen runs these in workers) -----------------------------------------
    async def load_queues(self, client: OpsbusClient) -> None:
        queues = await client.queues()
        fetched = self.wall()
        self.queues = {}
        for queue in queues:
            # The broker's age is at its clock; as a moment it keeps ageing on ours.
            oldest = queue.get("oldest_open_age_s")
            queue["_oldest_at"] = None if oldest is None else fetched - timedelta(
                seconds=float(oldest))
            self.queues[queue["name"]] = queue
        if self.queue != ALL_QUEUES and self.queue not in self.queues:
            self.queue = ALL_QUEUES
        self._changed()

    async def load_items(self, client: OpsbusClient) -> None:
        queue, view = self.queue, self.view
        answer = await client.todos(queue=None if queue == ALL_QUEUES else queue,
                                    limit=MAX_ITEMS, **view_params(view, self.operator))
        if (queue, view) != (self.queue, self.view):
            return  # the reader moved on while this answer was on its way
        self.items = {item["id"]: item for item in answer["items"]}
        self.more = answer.get("next") is not None
        self.marked &= set(self.items)
        self.status, self.problem = "ready", None
        self._changed()

    def failed(self, problem: str) -> None:
        self.status, self.problem = "error", problem
        self._changed()

    async def load_fields(self, client: OpsbusClient, seqs: list[int]) -> None:
        """Key fields of the latest events of listed items (one request per event; events
        are immutable, so each is fetched once)."""
        for seq in seqs:
            if seq in self.fields:
                continue
            try:
                stored = await client.event(seq)
            except OpsbusError:  # a missing event shows no fields, nothing more
                self.remember_fields(seq, KeyFields())
                continue
            self.remember_fields(seq, key_fields(stored["event"]))
        self._changed()
