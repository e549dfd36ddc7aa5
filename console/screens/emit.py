"""The Emit workbench: pick a template or a previous event, edit, send, see the routing."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import orjson
from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import OptionList, Static, TextArea
from textual.widgets.option_list import Option

from broker.errors import OpsbusError
from console.format import pretty_json
from console.screens.base import ConsoleScreen
from console.widgets.editor import parse_event

MAX_TEMPLATES = 500
RECENT = 20


def load_templates(folder: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """(label, event) for every event in the folder's `.ndjson` and `.json` files."""
    found: list[tuple[str, dict[str, Any]]] = []
    if folder is None or not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".ndjson":
                events = [orjson.loads(line) for line in path.read_bytes().splitlines()
                          if line.strip()]
            elif path.suffix == ".json":
                doc = orjson.loads(path.read_bytes())
                events = doc if isinstance(doc, list) else [doc]
            else:
                continue
        except (OSError, orjson.JSONDecodeError):
            continue  # a broken sample file is skipped, not fatal
        for event in events:
            if isinstance(event, dict) and len(found) < MAX_TEMPLATES:
                label = f"{path.stem}: {event.get('type')} {event.get('subject') or ''}"
                found.append((label.strip(), event))
    return found


class EmitScreen(ConsoleScreen):
    """Templates and recent events on the left, the JSON editor and the outcome on the
    right. Sending publishes through the broker, which names a bad attribute."""

    HELP_TITLE = "Emit workbench"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "send", "Send", priority=True),
        Binding("ctrl+n", "renew", "New id + time", priority=True),
        Binding("ctrl+r", "reload", "Reload lists", show=False),
    ]
    MUTATING = frozenset({"send"})

    def __init__(self) -> None:
        super().__init__()
        self.templates: list[tuple[str, dict[str, Any]]] = []
        self.recent: list[dict[str, Any]] = []
        self.last_result: dict[str, Any] | None = None
        self.ready = False
        """The templates and recent events are listed."""

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal():
            with Vertical(id="emit-left"):
                yield Static("TEMPLATES & RECENT EVENTS", classes="pane-title")
                yield OptionList(id="templates")
            with Vertical(id="emit-right"):
                yield Static("EVENT (JSON) — ctrl+s sends, ctrl+n gives it a new id and time",
                             classes="pane-title")
                yield TextArea("", soft_wrap=False, show_line_numbers=True,
                               tab_behavior="indent", id="emit-editor")
                yield Static("", id="emit-check")
                yield Static("", id="emit-result")

    def on_mount(self) -> None:
        self.templates = load_templates(self.console.templates_dir)
        self.reload()

    @work(exclusive=True, group="emit-load")
    async def reload(self) -> None:
        try:
            page = await self.console.client.events(limit=RECENT, order="desc")
            self.recent = list(page["events"])
        except OpsbusError:
            self.recent = []
        options = self.query_one(OptionList)
        options.clear_options()
        if self.templates:
            options.add_option(Option(Text("sample events", style="bold"), disabled=True))
            options.add_options(Option(label, id=f"t{i}")
                                for i, (label, _) in enumerate(self.templates))
        if self.recent:
            options.add_option(Option(Text("recent events", style="bold"), disabled=True))
            options.add_options(
                Option(f"{s['seq']}: {s['event'].get('type')} {s['event'].get('subject') or ''}",
                       id=f"r{i}") for i, s in enumerate(self.recent))
        if not self.templates and not self.recent:
            options.add_option(Option("no templates (sample_events/) and no events yet",
                                      disabled=True))
        if not self.query_one("#emit-editor", TextArea).text and self.templates:
            self.edit(self.templates[0][1])
        self.ready = True

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        ident = event.option.id or ""
        if ident.startswith("t"):
            self.edit(self.templates[int(ident[1:])][1])
        elif ident.startswith("r"):
            self.edit(self.recent[int(ident[1:])]["event"])
        self.query_one("#emit-editor").focus()

    def edit(self, event: dict[str, Any]) -> None:
        """Put an event into the editor."""
        self.query_one("#emit-editor", TextArea).load_text(pretty_json(event))
        self.query_one("#emit-result", Static).update("")

    @work(exclusive=True, group="emit-load-one")
    async def edit_seq(self, seq: int) -> None:
        try:
            self.edit((await self.console.client.event(seq))["event"])
        except OpsbusError as exc:
            self.notify(f"cannot load seq {seq}: {exc.detail}", severity="error")

    @on(TextArea.Changed, "#emit-editor")
    def _changed(self, event: TextArea.Changed) -> None:
        _, problem = parse_event(event.text_area.text)
        check = self.query_one("#emit-check", Static)
        check.update(Text(problem, style="red") if problem else Text("valid JSON",
                                                                      style="green"))

    def action_renew(self) -> None:
        editor = self.query_one("#emit-editor", TextArea)
        value, problem = parse_event(editor.text)
        if value is None:
            self.notify(problem or "", severity="error")
            return
        value["id"] = str(uuid.uuid4())
        value["time"] = self.console.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        editor.load_text(pretty_json(value))

    @work(exclusive=True, group="emit-send")
    async def action_send(self) -> None:
        value, problem = parse_event(self.query_one("#emit-editor", TextArea).text)
        result = self.query_one("#emit-result", Static)
        if value is None:
            result.update(Text(problem or "", style="bold red"))
            return
        try:
            answer = await self.console.client.publish(value)
        except OpsbusError as exc:
            where = exc.extra.get("attribute")
            result.update(Text(f"rejected: {exc.detail}"
                               + (f"  (attribute: {where})" if where else ""),
                               style="bold red"))
            return
        self.last_result = answer
        line = Text(f"published as seq {answer['seq']}", style="bold green")
        if answer.get("duplicate"):
            line = Text(f"duplicate: already stored as seq {answer['seq']} "
                        "(ctrl+n gives it a new id)", style="bold yellow")
        try:
            stored = await self.console.client.event(int(answer["seq"]))
        except OpsbusError:
            stored = {}
        routes = ", ".join(stored.get("routes", [])) or "no route matched"
        line.append(f"\nroutes: {routes}", style="")
        for target in stored.get("targets", []):
            detail = target.get("detail") or {}
            what = ", ".join(f"{k}={v}" for k, v in detail.items())
            line.append(f"\n  {target['route']} → {target['target']}  {what}", style="")
        result.update(line)

    def action_reload(self) -> None:
        self.templates = load_templates(self.console.templates_dir)
        self.reload()
