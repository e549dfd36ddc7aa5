"""A scrollable, highlighted view of a JSON value."""

from __future__ import annotations

from typing import Any

from rich.json import JSON
from textual.containers import VerticalScroll
from textual.widgets import Static

from console.format import pretty_json


class JsonView(VerticalScroll, can_focus=True):
    """Pretty, highlighted JSON; focusable so it scrolls with the keys."""

    DEFAULT_CSS = """
    JsonView { height: 1fr; background: $surface; padding: 0 1; }
    JsonView > Static { width: auto; }
    """

    def __init__(self, value: Any = None, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._value = value

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(self._renderable(self._value))

    def show(self, value: Any) -> None:
        self._value = value
        self.query_one(Static).update(self._renderable(value))

    @staticmethod
    def _renderable(value: Any) -> Any:
        return "" if value is None else JSON(pretty_json(value))
