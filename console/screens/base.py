"""What every console screen shares: status bar, footer, back, read-only keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget

from console.widgets.key_hints import KeyHints
from console.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from console.app import OpsbusConsole


class ConsoleScreen(Screen[None]):
    """A screen of the console. Actions named in MUTATING change the broker's state and
    are hidden (and refused) in read-only mode."""

    MUTATING: ClassVar[frozenset[str]] = frozenset()
    HELP_TITLE: ClassVar[str] = ""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.back", "Back", show=False),
    ]

    @property
    def console(self) -> OpsbusConsole:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield from self.compose_body()
        yield StatusBar()
        yield KeyHints()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.console.read_only:
            return False
        return True

    def filter_view(self) -> None:
        """`/` on this screen: focus its filter (screens that have one override this)."""
        self.notify("this view has no filter", severity="warning")
