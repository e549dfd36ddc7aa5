"""The status bar: broker, operator, the unclaimed-critical badge, connection state."""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class StatusBar(Static):
    """One line at the bottom of every screen; follows the app's connection state and
    its count of unclaimed critical items."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self._stale = False
        self.watch(self.app, "connection", self._refresh_state)
        self.watch(self.app, "connection_detail", self._refresh_state)
        self.watch(self.app, "unclaimed_critical", self._refresh_state)
        self.watch(self.app, "auth_problem", self._refresh_state)
        self.app.screen_change_signal.subscribe(self, self._screen_changed)

    def on_unmount(self) -> None:
        self.app.screen_change_signal.unsubscribe(self)

    def _screen_changed(self, screen: Screen[object]) -> None:
        if screen is self.screen and self._stale:
            self._refresh_state()

    def _refresh_state(self, _: object = None) -> None:
        # The bar of a hidden screen is drawn once, when its screen is shown again.
        self._stale = not self.screen.is_current
        if self._stale:
            return
        app = self.app
        state: str = app.connection  # type: ignore[attr-defined]
        detail: str | None = app.connection_detail  # type: ignore[attr-defined]
        critical: int = app.unclaimed_critical  # type: ignore[attr-defined]
        line = Text()
        line.append(" opsbus ", style="bold reverse")
        if critical:
            line.append(f" ⚠ {critical} unclaimed critical ", style="bold white on red")
        line.append(f" {app.broker_label}", style="bold")  # type: ignore[attr-defined]
        line.append(f"  as {app.operator}")  # type: ignore[attr-defined]
        if app.read_only:  # type: ignore[attr-defined]
            line.append("  READ-ONLY", style="bold yellow")
        colour = {"connected": "green", "connecting": "yellow"}.get(state, "red")
        line.append(f"  ● {state}", style=f"bold {colour}")
        if state == "disconnected":
            line.append(f" — {detail or 'no answer'}; reconnecting…", style=colour)
        problem: str | None = app.auth_problem  # type: ignore[attr-defined]
        if problem:
            line.append(f"  ✗ {problem}", style="bold red")
        line.append("   :command  /filter  ?help", style="dim")
        self.update(line, layout=False)  # one line high whatever it says
