"""Our commands in Textual's command palette (ctrl+p)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from console.app import OpsbusConsole

VIEW_COMMANDS = (
    ("Stream", "stream", "Live events, follow and pause, CESQL filter"),
    ("Queues", "queues", "Todo items: claim, resolve, re-emit"),
    ("Deliveries", "deliveries", "Failing subscriptions, dead letters, retry"),
    ("Emit", "emit", "The workbench: compose an event from a template and send it"),
    ("Silences", "silences", "Mute matching events for a while"),
    ("Catalog", "catalog", "Sources and types seen, rates, silent producers, data shapes"),
)


class ConsoleCommands(Provider):
    """Views, help, and one entry per known queue."""

    @property
    def console(self) -> OpsbusConsole:
        return self.app  # type: ignore[return-value]

    def _commands(self) -> list[tuple[str, Any, str]]:
        app = self.console
        found: list[tuple[str, Any, str]] = [
            (f"Go to {title}", partial(app.show_view, mode), help_text)
            for title, mode, help_text in VIEW_COMMANDS
        ]
        found.append(("Help: keys", app.action_help, "Every key of every screen"))
        found.append(("Command line", app.action_command_line,
                      ":stream EXPR, :queue NAME, :item ID, :event SEQ"))
        queues = getattr(app, "known_queues", [])
        for name in queues:
            found.append((f"Queue {name}", partial(app.run_command, f"queue {name}"),
                          f"Show the items of queue {name}"))
        return found

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
