"""The CESQL filter bar: checked by the broker as you type, applied with enter."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, Static

from broker.errors import OpsbusError
from console.messages import FilterSubmitted, FilterValidated
from console.models.stream import is_free_text

PROBE_EVENT: dict[str, Any] = {
    "specversion": "1.0", "id": "probe", "source": "opsbus/console", "type": "probe",
}
"""Evaluating against any event reports parse errors, which is all the bar checks."""

NEVER_MATCHES = frozenset({"unknownFunction", "notBoolean", "neverMatches"})
"""Warning codes of the broker that mean no event can ever match."""
CHECK_DELAY_S = 0.15
"""Typing pause before the expression is sent to the broker for checking."""


def offset(position: Any) -> int | None:
    """The 0-based character offset of an error position: the broker reports
    `{"line", "column"}` (1-based); the bar holds one line."""
    if isinstance(position, dict) and isinstance(position.get("column"), int):
        return max(0, int(position["column"]) - 1)
    return position if isinstance(position, int) else None


class FilterBar(Vertical):
    """An Input for a CESQL expression with a live error line under it."""

    DEFAULT_CSS = """
    FilterBar { height: auto; }
    FilterBar Input { border: tall $panel; }
    FilterBar.-invalid Input { border: tall $error; }
    FilterBar .filter-error { color: $error; height: auto; padding: 0 1; display: none; }
    FilterBar.-invalid .filter-error { display: block; }
    FilterBar.-warning Input { border: tall $warning; }
    FilterBar.-warning .filter-error { display: block; color: $warning; }
    FilterBar .filter-hint { color: $text-muted; height: auto; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave filter", show=False),
    ]

    def __init__(self, placeholder: str = "CESQL filter, e.g. type LIKE 'ci.%', or words "
                 "to search for   (enter applies, empty clears)", *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.placeholder = placeholder
        self.error: str | None = None
        self.warning: str | None = None
        self.checked: str | None = None
        """The expression the error (or warning) line is about."""
        self.applied = ""
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder=self.placeholder, id="filter-input")
        yield Static("", classes="filter-error")
        yield Static("", classes="filter-hint")

    def on_mount(self) -> None:
        self.query_one(".filter-hint").display = False

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    def set_expression(self, text: str, *, applied: bool = True) -> None:
        """Show an expression (applied elsewhere, e.g. from the `:` command line)."""
        with self.input.prevent(Input.Changed):
            self.input.value = text
        if applied:
            self.applied = text
        self._show(text, None, None, None)

    @on(Input.Changed, "#filter-input")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        text = event.value.strip()
        if not text:
            self._show(text, None, None, None)
            return
        self._timer = self.set_timer(CHECK_DELAY_S, lambda: self.check(text))

    @work(exclusive=True, group="filter-check")
    async def check(self, text: str) -> None:
        """Ask the broker whether the expression parses and can ever match."""
        message: str | None = None
        position: int | None = None
        warning: str | None = None
        if is_free_text(text):
            warning = None
        else:
            try:
                answer = await self.app.client.evaluate(  # type: ignore[attr-defined]
                    PROBE_EVENT, expression=text)
            except OpsbusError as exc:
                message = f"cannot check: {exc.detail}"
            else:
                error = answer.get("error") or {}
                found = answer.get("warnings") or []
                # A missing attribute is normal for the probe event; a parse error says
                # the expression is wrong; the broker's warnings say it can never match
                # (an unknown function, a constant, a lone name...).
                if error.get("kind") == "parse":
                    message, position = str(error.get("message")), offset(
                        error.get("position"))
                elif found:
                    first = found[0]
                    warning = str(first.get("message"))
                    if first.get("code") in NEVER_MATCHES:
                        warning += ": this filter can never match"
                elif error.get("kind") == "missingFunction":  # a broker without warnings
                    warning = f"{error.get('message')}: this filter can never match"
        if text == self.input.value.strip():
            self._show(text, message, position, warning)
        self.post_message(FilterValidated(text, message, position, warning))

    def _show(self, text: str, error: str | None, position: int | None,
              warning: str | None = None) -> None:
        self.checked = text
        self.error = error
        self.warning = warning
        self.set_class(error is not None, "-invalid")
        self.set_class(error is None and warning is not None, "-warning")
        label = self.query_one(".filter-error", Static)
        hint = self.query_one(".filter-hint", Static)
        hint.update(Text("free-text search in type, source, subject and data "
                         "(use an operator for CESQL)", style="italic"))
        hint.display = is_free_text(text)
        if error is None:
            label.update(Text(f"⚠ {warning}") if warning else "")
            return
        line = Text("✗ ")
        if position is not None and 0 <= position <= len(text):
            line.append(text[:position])
            line.append(text[position:position + 1] or " ", style="reverse")
            line.append(text[position + 1:])
            line.append(f"   at {position}: ")
        line.append(error)
        label.update(line)

    @on(Input.Submitted, "#filter-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if self._timer is not None:
            self._timer.stop()
        if text:
            # Check now rather than trusting a result that may predate the last keystroke.
            await self.check(text).wait()
        if self.error is None:
            self.applied = text
            self.post_message(FilterSubmitted(text))

    def action_leave(self) -> None:
        self.screen.focus_next()
