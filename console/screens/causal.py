"""The causal tree of an event: what caused it (up to the root) and what it caused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from broker.errors import OpsbusError
from console.format import short_time
from console.screens.base import ConsoleScreen

PAGE = 1000
MAX_EVENTS = 5000
"""Most events of one correlation loaded to build the tree."""
MAX_DEPTH = 32
"""Causation chains are cut here (the broker's hop limit is far below)."""

Stored = dict[str, Any]


def quote(text: str) -> str:
    """A CESQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def build_children(events: Iterable[Stored]) -> dict[str, list[Stored]]:
    """Events by the id of the event that caused them, in seq order."""
    children: dict[str, list[Stored]] = {}
    for stored in sorted(events, key=lambda s: s["seq"]):
        cause = stored["event"].get("causationid")
        if cause:
            children.setdefault(str(cause), []).append(stored)
    return children


class CausalScreen(ConsoleScreen):
    """A tree rooted at the first cause; the event asked for is highlighted."""

    HELP_TITLE = "Causal tree"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Detail", show=True),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, seq: int) -> None:
        super().__init__()
        self.seq = seq
        self.ready = False
        """The tree was built (or the failure shown)."""

    def compose_body(self) -> Iterable[Widget]:
        yield Static(f"causal tree of seq {self.seq}", id="causal-title", classes="pane-title")
        yield Tree[Stored]("…", id="tree")

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        tree.auto_expand = False  # enter opens the event; space folds
        tree.focus()
        self.load()

    async def _find(self, expression: str) -> list[Stored]:
        page = await self.console.client.events(limit=100, filter=expression)
        return list(page["events"])

    async def _correlated(self, correlation: str) -> list[Stored]:
        found: list[Stored] = []
        after = 0
        while len(found) < MAX_EVENTS:
            page = await self.console.client.events(after=after, limit=PAGE,
                                                    correlationid=correlation)
            found += page["events"]
            if not page["events"] or page.get("next_after") is None:
                break
            after = page["next_after"]
        return found

    @work(exclusive=True, group="causal")
    async def load(self) -> None:
        client = self.console.client
        try:
            focus = await client.event(self.seq)
            event = focus["event"]
            by_id: dict[str, Stored] = {str(event["id"]): focus}
            correlation = event.get("correlationid") or event["id"]
            for stored in await self._correlated(str(correlation)):
                by_id.setdefault(str(stored["event"]["id"]), stored)
            # Walk up: causes outside the correlation are looked up one by one.
            root, depth = focus, 0
            while (cause := root["event"].get("causationid")) and depth < MAX_DEPTH:
                parent = by_id.get(str(cause))
                if parent is None:
                    hits = await self._find(f"id = {quote(str(cause))}")
                    if not hits:
                        break
                    parent = by_id.setdefault(str(cause), hits[0])
                root, depth = parent, depth + 1
            # And direct effects that carry another correlation id.
            for stored in await self._find(f"causationid = {quote(str(event['id']))}"):
                by_id.setdefault(str(stored["event"]["id"]), stored)
        except OpsbusError as exc:
            self.query_one("#causal-title", Static).update(
                Text(f"causal tree of seq {self.seq}: {exc.detail}", style="bold red"))
            self.ready = True
            return
        children = build_children(by_id.values())
        tree = self.query_one(Tree)
        tree.clear()
        tree.root.set_label(self._label(root))
        tree.root.data = root
        target = self._grow(tree.root, root, children, 0)
        tree.root.expand_all()
        if target is not None:
            tree.move_cursor(target)
        self.query_one("#causal-title", Static).update(
            f"causal tree of seq {self.seq} — root seq {root['seq']}, "
            f"correlationid {correlation}, {len(by_id)} events")
        self.ready = True

    def _grow(self, node: TreeNode[Stored], stored: Stored,
              children: dict[str, list[Stored]], depth: int) -> TreeNode[Stored] | None:
        """Add the effects under `node`; the node of the focus event if met."""
        found = node if stored["seq"] == self.seq else None
        if depth >= MAX_DEPTH:
            return found
        for child in children.get(str(stored["event"]["id"]), []):
            branch = node.add(self._label(child), data=child)
            hit = self._grow(branch, child, children, depth + 1)
            found = found or hit
        return found

    def _label(self, stored: Stored) -> Text:
        event = stored["event"]
        style = "bold reverse" if stored["seq"] == self.seq else ""
        label = Text(f"{stored['seq']:>6}  ", style="dim")
        label.append(f"{short_time(event.get('time'))}  {event.get('type')}", style=style)
        label.append(f"  {event.get('source')}", style="dim")
        if event.get("subject"):
            label.append(f"  {event['subject']}")
        return label

    def action_open(self) -> None:
        node = self.query_one(Tree).cursor_node
        if node is not None and node.data is not None:
            self.console.open_event(int(node.data["seq"]))

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[Stored]) -> None:
        event.stop()
        self.action_open()

    def action_reload(self) -> None:
        self.load()
