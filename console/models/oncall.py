"""What pages the on-call engineer: unclaimed critical items in every queue, and new
critical or high items announced once."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime

from broker.client import OpsbusClient
from console.models.items import Item, is_critical, is_unclaimed, is_urgent
from console.models.observable import Observable

MAX_TRACKED = 5000
"""Urgent items held (the badge counts them); beyond this the oldest are forgotten."""
LOAD_PAGES = 5
"""Pages of 1,000 open items read at start-up to count the unclaimed critical ones."""
REMEMBERED = 2000
"""Announced item ids remembered, so an item announces itself once."""


class OnCall(Observable):
    """Urgent (critical or high) open items across queues. `announce` is called with each
    item that became urgent and unclaimed after the console started."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        super().__init__()
        self.now = now
        self.urgent: dict[int, Item] = {}
        self.loaded = False
        self.announced: deque[int] = deque(maxlen=REMEMBERED)
        self.announce: Callable[[Item], None] | None = None

    def _now(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%S")

    @property
    def unclaimed_critical(self) -> int:
        now = self._now()
        return sum(1 for i in self.urgent.values() if is_critical(i) and is_unclaimed(i, now))

    def _keep(self, item: Item) -> bool:
        return is_urgent(item) and item.get("state") in ("open", "claimed")

    async def load(self, client: OpsbusClient) -> None:
        """Read the open items of every queue (what was urgent before is not announced)."""
        after: str | None = None
        found: dict[int, Item] = {}
        for _ in range(LOAD_PAGES):
            page = await client.todos(state="open", limit=1000, after=after)
            found.update((i["id"], i) for i in page["items"] if self._keep(i))
            after = page.get("next")
            if not after:
                break
        # Audit events applied while loading are newer than the page: they win.
        for item_id, item in self.urgent.items():
            found[item_id] = item
        self.urgent = found
        self.announced.extend(found)
        self.loaded = True
        self._trim()
        self.changed()

    def apply(self, item: Item, notify: bool = True) -> bool:
        """An item changed (from an audit event or an operation's answer); True when the
        urgent items changed. With `notify=False` the caller tells the observers once
        for a whole batch."""
        known = self.urgent.get(item["id"])
        if known is not None and known["updated_at"] > item["updated_at"]:
            return False
        if self._keep(item):
            self.urgent[item["id"]] = item
            self._trim()
            if (self.loaded and is_unclaimed(item, self._now())
                    and item["id"] not in self.announced):
                self.announced.append(item["id"])
                if self.announce is not None:
                    self.announce(item)
        elif self.urgent.pop(item["id"], None) is None:
            return False
        if notify:
            self.changed()
        return True

    def _trim(self) -> None:
        while len(self.urgent) > MAX_TRACKED:
            del self.urgent[next(iter(self.urgent))]
