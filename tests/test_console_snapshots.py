"""Snapshot tests of every console screen, at 100x30 and 200x50, against a broker loaded
with fixed events.

The sample day has fixed ids and times; plugins are disabled so seqs start at 1; the
app's clock is set 10m30s after the last event was received, so every age reads `10m`;
the status bar shows a context name instead of the (random) port; the cursor does not
blink (Textual's test driver) and nothing is compared before the screen's data,
key fields and silences are loaded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from console.app import OpsbusConsole
from console.format import parse_time
from console.screens.detail import EventDetailScreen
from console.screens.queues import QueuesScreen
from console.screens.stream import StreamScreen
from console.widgets.key_hints import KeyHints
from tests.broker_process import ADMIN_TOKEN, ROOT, BrokerProcess
from tests.console_support import http, publish, until, write_config

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((200, 50), id="200x50")]

EXTRA_CONFIG = """
[[subscriptions]]
name = "ci-pull"
type = "pull"
max_deliveries = 1

[[routes]]
name = "deploys-to-ci"
filter = { exact = { type = "ci.deploy.failed" } }
targets = ["subscription:ci-pull"]
"""


@dataclass
class Loaded:
    url: str
    now: datetime
    chain_seq: int
    alert_seq: int
    item_id: int


def sample_events() -> list[dict[str, Any]]:
    import orjson

    events: list[dict[str, Any]] = []
    for path in sorted((ROOT / "sample_events").iterdir()):
        if path.suffix == ".ndjson":
            events += [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
        elif path.suffix == ".json":
            doc = orjson.loads(path.read_bytes())
            events += doc if isinstance(doc, list) else [doc]
    return events


def chain() -> list[dict[str, Any]]:
    """A root event, two effects and an effect of an effect (causation by id)."""
    def ev(n: str, type: str, cause: str | None) -> dict[str, Any]:
        e = {"specversion": "1.0", "id": n, "source": "tests/chain", "type": type,
             "time": "2026-11-25T23:30:00Z", "correlationid": "chain-root"}
        if cause:
            e["causationid"] = cause
        return e

    return [ev("chain-root", "chain.started", None), ev("chain-a", "chain.step", "chain-root"),
            ev("chain-b", "chain.step", "chain-root"), ev("chain-c", "chain.done", "chain-a")]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    folder = tmp_path_factory.mktemp("console-snapshots")
    config = (ROOT / "sample_events" / "opsbus.toml").read_text().replace(
        'listen = "127.0.0.1:8787"\n', "").replace('data_dir = ".opsbus"\n', "")
    proc = BrokerProcess(folder / "data", config=write_config(folder, config + EXTRA_CONFIG))
    proc.start()
    try:
        url = proc.url
        results = publish(url, sample_events())
        chained = publish(url, chain())
        # One dead letter: the pull consumer rejects the failed deploy it received.
        received = http(f"{url}/v1/subscriptions/ci-pull/receive", "POST", {"max": 1})
        http(f"{url}/v1/subscriptions/ci-pull/reject", "POST",
             {"leases": [m["lease"] for m in received]})
        http(f"{url}/v1/silences", "POST", {
            "matcher": {"key": "k8s.pod.crashloop/preview-*"}, "queue": "platform",
            "duration": "7230s", "comment": "preview namespaces are rebuilt nightly",
            "operator": "jonas"})
        last = http(f"{url}/v1/events?order=desc&limit=1")["events"][0]
        now = parse_time(last["recvtime"])
        assert now is not None
        alert = next(r for r, e in zip(results, sample_events(), strict=True)
                     if e["id"] == "am-0009")
        dba = http(f"{url}/v1/todos?queue=dba&state=open")["items"]
        yield Loaded(url, now + timedelta(minutes=10, seconds=30), chained[0]["seq"],
                     alert["seq"], min(i["id"] for i in dba))
    finally:
        proc.stop()


def console(data: Loaded, **options: Any) -> OpsbusConsole:
    return OpsbusConsole(data.url, token=ADMIN_TOKEN, operator="jonas", context="snapshot",
                         now=lambda: data.now, **options)


def settled(app: OpsbusConsole) -> bool:
    """The screen on top shows its data (with the key fields and silence marks of the
    items listed), every feed is connected; the Stream follows live."""
    screen = app.screen
    return (getattr(screen, "ready", True) and app.connection == "connected"
            and app.silences.loaded and app.oncall.loaded
            and (not isinstance(screen, QueuesScreen) or not app.queues.missing_fields(60))
            and (not isinstance(screen, StreamScreen) or screen.live))


def at_rest(app: OpsbusConsole) -> bool:
    """The key line names the keys that work now and a followed Stream table shows its
    newest row. Both follow their data a refresh later, so after the data has come they
    are asked once more for what they should show: the picture is taken once the screen
    has come to rest, whichever refresh got there last."""
    screen = app.screen
    hints = list(screen.query(KeyHints))
    table = screen.table if isinstance(screen, StreamScreen) else None
    if all(h.up_to_date for h in hints) and (table is None or table.at_rest):
        return True
    for hint in hints:
        hint.refresh_line()
    if table is not None and table.following:
        table.scroll_end(animate=False, x_axis=False, immediate=True)
    return False


def steady_cursors(app: OpsbusConsole) -> None:
    """Text cursors that do not blink: the picture must not depend on the instant."""
    for field in app.screen.query(Input):
        field.cursor_blink = False
    for area in app.screen.query(TextArea):
        area.cursor_blink = False


async def settle(pilot: Pilot[Any]) -> None:
    """Until the screen on top has loaded its data, then one more frame."""
    await until(pilot, lambda: settled(pilot.app), what="screen data")  # type: ignore[arg-type]
    await until(pilot, lambda: at_rest(pilot.app), what="screen at rest")  # type: ignore[arg-type]
    steady_cursors(pilot.app)  # type: ignore[arg-type]
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
def test_stream(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Stream: the newest sample events, FOLLOW mode, the filter in the bar, status bar."""
    app = console(loaded, screen="stream")
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_stream_invalid_filter(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Stream: an unterminated string in the filter bar, red, with the error and position."""
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("/", *"type = 'ci.deploy")
        bar = pilot.app.screen.query_one("FilterBar")
        await until(pilot, lambda: bar.checked == "type = 'ci.deploy" and bar.error,
                    what="the error of the whole expression")
        steady_cursors(pilot.app)  # type: ignore[arg-type]
        await pilot.pause()

    app = console(loaded, screen="stream")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Home: every queue's items, critical first, key fields inline, the unclaimed
    critical badge; preview crash loops marked silenced."""
    app = console(loaded)
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_item_detail(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Item detail: fields of an open slow-query item, its history and its one event."""
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.open_item(loaded.item_id)  # type: ignore[attr-defined]
        await settle(pilot)

    assert snap_compare(console(loaded), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_event_detail(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Event detail: an alert's attributes, routing targets, data and correlated events."""
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.open_event(loaded.alert_seq)  # type: ignore[attr-defined]
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, EventDetailScreen)
        # recvtime is the broker's clock at publish time: pinned for a stable picture.
        table = screen.query_one("#attributes", DataTable)
        row = table.get_row_index("recvtime")
        table.update_cell_at(Coordinate(row, 1), "2026-11-25T14:05:29.000000Z")
        await pilot.pause()

    assert snap_compare(console(loaded), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_causal_tree(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Causal tree: chain-root with two steps, one of which caused chain.done; focus on c."""
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.open_causal(loaded.chain_seq + 3)  # type: ignore[attr-defined]
        await settle(pilot)

    assert snap_compare(console(loaded), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_emit(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Emit: sample templates and recent events on the left, the first template in the editor."""
    app = console(loaded, screen="emit")
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_deliveries(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Deliveries: the ci-pull subscription with one dead letter (the failed deploy)."""
    app = console(loaded, screen="deliveries")
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_silences(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Silences: one silence on preview crash loops in platform, 2h left, with its comment."""
    app = console(loaded, screen="silences")
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Help: the keys of every view, read from the bindings, and the `:` commands."""
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("?")

    app = console(loaded, screen="stream")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_queues_read_only(snap_compare: Any, loaded: Loaded, size: tuple[int, int]) -> None:
    """Queues read-only: READ-ONLY in the status bar, no claim/resolve/... keys in the footer."""
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        assert isinstance(pilot.app.screen, QueuesScreen)

    app = console(loaded, screen="queues", read_only=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
async def test_home_screenshot_for_docs(loaded: Loaded, tmp_path: Path,
                                        size: tuple[int, int]) -> None:
    """The home screen exports as the SVGs README.md shows (docs/home-100x30.svg and
    docs/home-200x50.svg are rewritten from it when OPSBUS_DOCS_SCREENSHOT=1)."""
    import os

    app = console(loaded)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        app.title = "opsbus console — the on-call home"
        folder = ROOT / "docs" if os.environ.get("OPSBUS_DOCS_SCREENSHOT") else tmp_path
        name = f"home-{size[0]}x{size[1]}.svg"
        app.save_screenshot(name, str(folder))
    svg = (folder / name).read_text()
    assert svg.startswith("<svg") and "QUEUES" in svg and "unclaimed" in svg
