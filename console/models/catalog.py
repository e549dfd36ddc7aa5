"""The Catalog view's state: every source and type the broker has seen, and the chosen
one's inferred data shape. No widget code: the Catalog screen renders it."""

from __future__ import annotations

from typing import Any

from broker.client import OpsbusClient
from broker.errors import NotFound, OpsbusError
from console.models.observable import Observable

Key = tuple[str, str]
"""(source, type)."""


def key_of(entry: dict[str, Any]) -> Key:
    return str(entry["source"]), str(entry["type"])


def row_key(key: Key) -> str:
    """A table row key for an entry (sources and types hold no newline)."""
    return f"{key[0]}\n{key[1]}"


def key_of_row(row: str) -> Key:
    source, _, type_ = row.partition("\n")
    return source, type_


class CatalogModel(Observable):
    """What the broker's catalog says; silent producers first, then by source and type."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[Key, dict[str, Any]] = {}
        self.selected: Key | None = None
        self.shape: dict[str, dict[str, Any]] = {}
        self.shape_of: Key | None = None
        """The entry whose shape `shape` holds."""
        self.status = "loading"
        """loading, ready, or unavailable (then `problem` says why)."""
        self.problem: str | None = None
        self.changed_keys: set[Key] = set()
        """Entries an `opsbus.catalog.changed` event named since this view opened."""

    async def load(self, client: OpsbusClient) -> None:
        """Every entry, then the selected one's shape."""
        try:
            listing = await client.catalog()
        except NotFound:
            self._unavailable("this broker has no catalog")
            return
        except OpsbusError as exc:
            self._unavailable(f"cannot load the catalog: {exc.detail}")
            return
        if not listing.get("enabled", True):
            self._unavailable("the catalog is off on this broker (catalog = false)")
            return
        found = {key_of(e): e for e in listing.get("entries", [])}
        self.entries = dict(sorted(found.items(), key=lambda kv: (not kv[1]["silent"],
                                                                   kv[0])))
        if self.selected not in self.entries:
            self.selected = next(iter(self.entries), None)
        self.status, self.problem = "ready", None
        self.changed()
        await self.load_shape(client)

    def _unavailable(self, why: str) -> None:
        self.status, self.problem = "unavailable", why
        self.changed()

    def select(self, key: Key) -> None:
        if key != self.selected:
            self.selected = key
            self.changed()

    def mark_changed(self, events: list[dict[str, Any]]) -> None:
        """Remember the entries drift announcements named (shown until the view closes)."""
        for event in events:
            data = event.get("data") or {}
            if isinstance(data, dict) and "source" in data and "type" in data:
                self.changed_keys.add((str(data["source"]), str(data["type"])))

    async def load_shape(self, client: OpsbusClient) -> None:
        selected = self.selected
        if selected is None:
            self.shape, self.shape_of = {}, None
            self.changed()
            return
        try:
            entry = await client.catalog_entry(*selected)
        except OpsbusError as exc:
            self.shape, self.shape_of = {}, selected
            self.problem = f"cannot load the shape: {exc.detail}"
        else:
            if self.selected != selected:
                return  # the selection moved on while this answer was on its way
            self.shape, self.shape_of = dict(entry.get("shape") or {}), selected
        self.changed()
