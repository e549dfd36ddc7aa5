"""The key line under each screen: the shown bindings as one line of text.

Textual's Footer rebuilds a widget per key whenever the bindings change (each focus
change, each screen switch), which cost a good part of a screen switch; this line is
redrawn as text instead."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class KeyHints(Static):
    """`c Claim  d Resolve  …` for the keys of the screen it is on."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-hints--key"}
    DEFAULT_CSS = """
    KeyHints { height: 1; background: $footer-background; color: $footer-foreground;
               padding: 0 1; }
    KeyHints > .key-hints--key { color: $footer-key-foreground; text-style: bold; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown = ""
        """The line as plain text (what the keys say)."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self._draw)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            self._draw()

    def _line(self) -> Text:
        key_style = self.get_component_rich_style("key-hints--key")
        line = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        for _, binding, enabled, _ in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            line.append(self.app.get_key_display(binding), style=key_style if enabled
                        else "dim")
            line.append(f" {binding.description}  ", style="" if enabled else "dim")
        return line

    @property
    def up_to_date(self) -> bool:
        """The line shows the keys that work now (it is redrawn a refresh after focus
        moves)."""
        return self.is_mounted and self.shown == self._line().plain

    def refresh_line(self) -> None:
        """Draw the keys that work now, if the line does not show them yet."""
        self._draw()

    def _draw(self) -> None:
        line = self._line()
        if line.plain != self.shown:
            self.shown = line.plain
            self.update(line, layout=False)  # one line high whatever it says
