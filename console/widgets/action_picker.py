"""A modal list of an item's permitted quick actions, with their runbook links."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


def action_prompt(action: dict[str, Any]) -> Text:
    """An action as listed: its name, description and runbook URL."""
    text = Text(str(action["name"]), style="bold")
    if action.get("description"):
        text.append(f"  {action['description']}")
    text.append("\n  runbook: ", style="dim")
    text.append(str(action.get("runbook_url") or "none"),
                style="underline" if action.get("runbook_url") else "dim")
    return text


class ActionPicker(ModalScreen[str | None]):
    """Dismisses with the chosen action's name (enter), or None (escape); `o` opens the
    highlighted action's runbook in a browser."""

    DEFAULT_CSS = """
    ActionPicker { align: center middle; background: $background 50%; }
    ActionPicker > Vertical { width: 90; max-width: 95%; height: auto; max-height: 80%;
                              border: thick $accent; background: $surface; padding: 1 2; }
    ActionPicker .title { text-style: bold; margin-bottom: 1; }
    ActionPicker OptionList { height: auto; max-height: 20; }
    ActionPicker .hint { color: $text-muted; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open_runbook", "Open runbook"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, actions: list[dict[str, Any]]) -> None:
        super().__init__()
        self.title_text = title
        self.actions = actions

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            yield OptionList(*(Option(action_prompt(a), id=str(a["name"]))
                               for a in self.actions), id="actions")
            yield Static("enter: run…   o: open runbook   escape: cancel", classes="hint")

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_open_runbook(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return
        url = self.actions[options.highlighted].get("runbook_url")
        if url:
            self.app.open_url(url)
        else:
            self.notify("this action has no runbook", severity="warning")

    def action_cancel(self) -> None:
        self.dismiss(None)
