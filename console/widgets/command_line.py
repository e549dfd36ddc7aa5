"""The `:` command line (k9s style): one line of input, completed from known commands."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static

COMMANDS = (
    "stream", "queues", "queue", "item", "event", "causal", "emit", "deliveries",
    "silences", "bell", "help", "quit",
)
"""Words the command line knows (see OpsbusConsole.run_command)."""


class CommandLine(ModalScreen[str | None]):
    """Asks for one command; dismisses with its text, or None on escape."""

    DEFAULT_CSS = """
    CommandLine { align: center top; background: $background 40%; }
    CommandLine > Vertical { width: 80%; height: auto; margin-top: 2;
                             border: tall $accent; background: $surface; padding: 0 1; }
    CommandLine Static { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("tab", "complete", "Complete", priority=True),
    ]

    def __init__(self, queues: list[str] | None = None) -> None:
        super().__init__()
        self.words = [*COMMANDS, *(f"queue {name}" for name in queues or [])]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(placeholder=":stream type='x'   :queue db   :item 42   :silences",
                        suggester=SuggestFromList(self.words, case_sensitive=False),
                        id="command-input")
            yield Static(" ".join(COMMANDS))

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip().lstrip(":") or None)

    def action_complete(self) -> None:
        """Tab takes the suggested completion (and a space, ready for the argument)."""
        line = self.query_one(Input)
        if line._suggestion and line._suggestion != line.value:
            line.value = line._suggestion + " "
            line.cursor_position = len(line.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
