"""A JSON editor modal: edit an event, check it, send it; stays open on errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static, TextArea

from broker.errors import OpsbusError
from console.format import pretty_json

Sender = Callable[[dict[str, Any]], Awaitable[Any]]


def parse_event(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The edited JSON object, or the reason it is not one (with line and column)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        return None, "the event must be a JSON object"
    return value, None


class EditorModal(ModalScreen[Any]):
    """Edits `value` as JSON. ctrl+s calls `send(edited)`; its answer dismisses the
    modal, while a broker error (400 naming the attribute) is shown and editing goes on.
    Escape dismisses with None."""

    DEFAULT_CSS = """
    EditorModal { align: center middle; background: $background 50%; }
    EditorModal > Vertical { width: 90%; height: 90%; border: thick $accent;
                             background: $surface; }
    EditorModal .title { text-style: bold; padding: 0 1; }
    EditorModal TextArea { height: 1fr; }
    EditorModal .check { padding: 0 1; color: $success; height: auto; }
    EditorModal .check.-error { color: $error; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "send", "Send", priority=True),
        # priority: the text area would take escape for itself otherwise
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, title: str, value: Any, send: Sender) -> None:
        super().__init__()
        self.title_text = title
        self.text = pretty_json(value)
        self.send = send

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            yield TextArea(self.text, soft_wrap=False, show_line_numbers=True,
                           tab_behavior="indent", id="editor")
            yield Static("valid JSON", classes="check")
            yield Footer()

    @on(TextArea.Changed)
    def _changed(self, event: TextArea.Changed) -> None:
        _, problem = parse_event(event.text_area.text)
        self._report(problem or "valid JSON", bool(problem))

    def _report(self, text: str, error: bool) -> None:
        label = self.query_one(".check", Static)
        label.update(text)
        label.set_class(error, "-error")

    async def action_send(self) -> None:
        value, problem = parse_event(self.query_one(TextArea).text)
        if value is None:
            self._report(problem or "", True)
            return
        self._report("sending…", False)
        try:
            answer = await self.send(value)
        except OpsbusError as exc:
            where = getattr(exc, "extra", {}).get("attribute")
            self._report(f"rejected: {exc.detail}" + (f" (attribute {where})" if where else ""),
                         True)
            return
        self.dismiss(answer)

    def action_cancel(self) -> None:
        self.dismiss(None)
