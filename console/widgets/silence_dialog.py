"""The new-silence dialog: matcher, queue, duration and comment, with a live preview of
the items (and, for a filter, the recent events) it would match."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Static

from broker.client import OpsbusClient
from console.models.silences import Preview, SilencesModel, parse_pattern

PREVIEW_DELAY_S = 0.3
PREVIEW_LINES = 12


def split_patterns(text: str) -> list[dict[str, Any]]:
    """`a | b` gives one silence per pattern (a glob on the key, or `sql: EXPR`)."""
    return [parse_pattern(p) for p in text.split(" | ") if p.strip()]


class SilenceDialog(ModalScreen[dict[str, Any] | None]):
    """Dismisses with {"matchers", "queue", "duration", "comment"} or None (escape)."""

    DEFAULT_CSS = """
    SilenceDialog { align: center middle; background: $background 50%; }
    SilenceDialog > Vertical { width: 96; max-width: 98%; height: auto; max-height: 95%;
                               border: thick $warning; background: $surface; padding: 0 1; }
    SilenceDialog .title { text-style: bold; }
    SilenceDialog Horizontal { height: auto; }
    SilenceDialog Label { width: 10; padding: 1 0 0 0; }
    SilenceDialog Input { width: 1fr; }
    SilenceDialog #preview { height: auto; max-height: 16; border: round $panel; }
    SilenceDialog .error { color: $error; }
    SilenceDialog #buttons { align: right middle; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", priority=True),
        Binding("ctrl+s", "create", "Create", priority=True),
    ]

    def __init__(self, client: OpsbusClient, *, pattern: str = "", queue: str | None = None
                 ) -> None:
        super().__init__()
        self.client = client
        self.pattern = pattern
        self.queue = queue or ""
        self.preview: Preview | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("New silence — stops matching events from opening new items; "
                         "items it covers stay, marked 🔇", classes="title")
            with Horizontal():
                yield Label("match")
                yield Input(self.pattern, placeholder="group-key glob (a | b for several) "
                            "or sql: EXPR", id="pattern")
            with Horizontal():
                yield Label("queue")
                yield Input(self.queue, placeholder="any queue", id="queue")
            with Horizontal():
                yield Label("for")
                yield Input("2h", id="duration")
            with Horizontal():
                yield Label("why")
                yield Input(placeholder="comment (required)", id="comment")
            with VerticalScroll(id="preview"):
                yield Static("type a matcher to see what it would silence", id="preview-text")
            yield Static("", classes="error")
            with Horizontal(id="buttons"):
                yield Button("Create (ctrl+s)", variant="warning", id="create")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#comment" if self.pattern else "#pattern", Input).focus()
        self.refresh_preview()

    @on(Input.Changed, "#pattern, #queue")
    def _matcher_changed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(PREVIEW_DELAY_S, self.refresh_preview)

    @work(exclusive=True, group="silence-preview")
    async def refresh_preview(self) -> None:
        matchers = split_patterns(self.query_one("#pattern", Input).value)
        queue = self.query_one("#queue", Input).value.strip() or None
        if not matchers:
            self.preview = None
            self.query_one("#preview-text", Static).update("type a matcher to see what it "
                                                           "would silence")
            return
        merged = Preview()
        seen: set[int] = set()
        for matcher in matchers:
            found = await SilencesModel.preview(self.client, matcher, queue)
            merged.problem = merged.problem or found.problem
            merged.events += found.events
            for item in found.items:
                if item["id"] not in seen:
                    seen.add(item["id"])
                    merged.items.append(item)
        self.preview = merged
        self.query_one("#preview-text", Static).update(self._describe(merged, matchers))

    @staticmethod
    def _describe(preview: Preview, matchers: list[dict[str, Any]]) -> Text:
        if preview.problem:
            return Text(f"✗ {preview.problem}", style="bold red")
        text = Text()
        count = len(preview.items)
        text.append(f"would cover {count} active item{'' if count == 1 else 's'}",
                    style="bold")
        if any("filter" in m for m in matchers):
            text.append(f"; matches {len(preview.events)} of the latest events")
        text.append(" — and open no new item for matching events\n")
        for item in preview.items[:PREVIEW_LINES]:
            text.append(f"  #{item['id']} ", style="bold")
            text.append(f"[{item['queue']}] {item['title']}  ")
            text.append(f"key {item['key']}\n", style="dim")
        if count > PREVIEW_LINES:
            text.append(f"  … and {count - PREVIEW_LINES} more\n", style="dim")
        return text

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "comment":
            self.action_create()
        else:
            self.focus_next()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.action_cancel()

    def action_create(self) -> None:
        matchers = split_patterns(self.query_one("#pattern", Input).value)
        duration = self.query_one("#duration", Input).value.strip()
        comment = self.query_one("#comment", Input).value.strip()
        problem = ("a matcher is required" if not matchers else
                   "a duration is required (30m, 2h, 1d)" if not duration else
                   "a comment is required (why is it silenced?)" if not comment else None)
        if problem:
            self.query_one(".error", Static).update(problem)
            return
        self.dismiss({"matchers": matchers, "duration": duration, "comment": comment,
                      "queue": self.query_one("#queue", Input).value.strip() or None})

    def action_cancel(self) -> None:
        self.dismiss(None)
