"""A one-line prompt as a modal dialog (resolution notes, comments, durations, seqs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class NoteModal(ModalScreen[str | None]):
    """Asks for a line of text; dismisses with it (enter) or None (escape).

    `check` returns an error message for unacceptable text, shown under the input."""

    DEFAULT_CSS = """
    NoteModal { align: center middle; background: $background 50%; }
    NoteModal > Vertical { width: 72; height: auto; border: thick $accent;
                           background: $surface; padding: 1 2; }
    NoteModal .title { text-style: bold; margin-bottom: 1; }
    NoteModal .error { color: $error; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, *, placeholder: str = "", value: str = "",
                 required: bool = False, check: Callable[[str], str | None] | None = None
                 ) -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value
        self.required = required
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            yield Input(value=self.value, placeholder=self.placeholder, id="note-input")
            yield Static("", classes="error")
            yield Static("enter: ok   escape: cancel", classes="hint")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        problem = "a value is required" if self.required and not text else None
        if problem is None and self.check is not None:
            problem = self.check(text)
        if problem:
            self.query_one(".error", Static).update(problem)
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
