"""A yes/no question as a modal dialog."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmModal(ModalScreen[bool]):
    """Dismisses with True for yes (y / enter on Yes), False for no (n / escape)."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; background: $background 50%; }
    ConfirmModal > Vertical { width: 60; height: auto; border: thick $warning;
                              background: $surface; padding: 1 2; }
    ConfirmModal Horizontal { height: auto; align: center middle; margin-top: 1; }
    ConfirmModal Button { margin: 0 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            with Horizontal():
                yield Button("Yes", variant="warning", id="yes")
                yield Button("No", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
