"""Pilot tests of the Stream screen against a real broker: live rows, filters, reconnect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import OpsbusConsole
from console.screens.stream import StreamScreen
from console.widgets.filter_bar import FilterBar
from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.console_support import event, in_thread, publish, until, write_config


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("console-stream")
    proc = BrokerProcess(folder / "data", config=write_config(folder)).start()
    try:
        yield proc
    finally:
        proc.stop()


def stream_of(app: OpsbusConsole) -> StreamScreen:
    assert isinstance(app.screen, StreamScreen)
    return app.screen


def shown_seqs(screen: StreamScreen) -> list[int]:
    return [row.seq for row in screen.table.rows]


async def test_published_events_appear_live(shared_broker: BrokerProcess) -> None:
    app = OpsbusConsole(shared_broker.url, token=ADMIN_TOKEN, operator="tester", screen="stream")
    async with app.run_test(size=(140, 40)) as pilot:
        screen = stream_of(app)
        await until(pilot, lambda: screen.ready and app.connection == "connected",
                    what="stream connected")
        results = await in_thread(publish, shared_broker.url,
                                  [event(n, id=f"live-{n}") for n in range(30)])
        last = results[-1]["seq"]
        await until(pilot, lambda: screen.table.last_seq >= last, what="last event shown")
        assert {r["seq"] for r in results} <= set(shown_seqs(screen))
        assert screen.table.following and screen.table.selected_seq == screen.table.last_seq
        # Pausing holds new events and counts them; resuming shows them.
        await pilot.press("space")
        more = await in_thread(publish, shared_broker.url,
                               [event(n, id=f"held-{n}") for n in range(5)])
        await until(pilot, lambda: screen.held_count == 5, what="5 held events")
        assert screen.table.last_seq == last
        await pilot.press("space")
        await until(pilot, lambda: screen.table.last_seq == more[-1]["seq"], what="resume")


async def test_filter_narrows_and_reports_errors(shared_broker: BrokerProcess) -> None:
    app = OpsbusConsole(shared_broker.url, token=ADMIN_TOKEN, operator="tester", screen="stream")
    async with app.run_test(size=(140, 40)) as pilot:
        screen = stream_of(app)
        await until(pilot, lambda: screen.ready, what="first page")
        bar = screen.query_one(FilterBar)
        await pilot.press("/")
        await pilot.press(*"type = 'test.narrow")  # unterminated string
        await until(pilot, lambda: bar.error is not None, what="parse error shown")
        assert bar.has_class("-invalid")
        await pilot.press("enter")  # refused while invalid
        assert screen.expression == ""
        await pilot.press("'")
        await until(pilot, lambda: bar.error is None, what="error cleared")
        await pilot.press("enter")
        await until(pilot, lambda: screen.expression == "type = 'test.narrow'" and screen.ready,
                    what="filter applied")
        mixed = [event(n, id=f"mix-{n}", type="test.narrow" if n % 3 == 0 else "test.other")
                 for n in range(12)]
        results = await in_thread(publish, shared_broker.url, mixed)
        wanted = {r["seq"] for r, e in zip(results, mixed, strict=True)
                  if e["type"] == "test.narrow"}
        await until(pilot, lambda: wanted <= set(shown_seqs(screen)), what="narrow events")
        assert all(row.type == "test.narrow" for row in screen.table.rows)
        # The `:` command line applies a filter too, and an empty one clears it.
        await pilot.press(":", *"stream type = 'test.other'", "enter")
        await until(pilot, lambda: screen.ready and screen.expression == "type = 'test.other'"
                    and len(screen.table.rows) > 0, what="command line filter")
        assert all(row.type == "test.other" for row in screen.table.rows)


async def test_jump_to_seq_and_older_rows(shared_broker: BrokerProcess) -> None:
    results = await in_thread(publish, shared_broker.url,
                              [event(n, id=f"jump-{n}") for n in range(300)])
    target = results[10]["seq"]
    app = OpsbusConsole(shared_broker.url, token=ADMIN_TOKEN,
                        operator="tester", window=250, screen="stream")
    async with app.run_test(size=(140, 40)) as pilot:
        screen = stream_of(app)
        await until(pilot, lambda: screen.ready, what="first page")
        assert target not in shown_seqs(screen)  # only the newest page is loaded
        await pilot.press("g", *str(target), "enter")
        await until(pilot, lambda: screen.table.selected_seq == target, what="jump")
        assert screen.paused and not screen.table.following
        # Above the first row, older events are loaded from the broker.
        await pilot.press("home", "up")
        await until(pilot, lambda: screen.table.first_seq < target, what="older rows")
        assert len(screen.table.rows) <= 250


async def test_reconnects_after_restart_without_losing_events(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "data", config=write_config(tmp_path)).start()
    try:
        app = OpsbusConsole(proc.url, token=ADMIN_TOKEN, operator="tester", screen="stream")
        async with app.run_test(size=(140, 40)) as pilot:
            screen = stream_of(app)
            await until(pilot, lambda: app.connection == "connected", what="connected")
            before = await in_thread(publish, proc.url,
                                     [event(n, id=f"before-{n}") for n in range(20)])
            await until(pilot, lambda: screen.table.last_seq == before[-1]["seq"],
                        what="events before the restart")
            await in_thread(proc.stop)
            await until(pilot, lambda: app.connection == "disconnected", what="disconnected")
            await in_thread(proc.start)
            # Published before the console has reconnected: resumed by Last-Event-ID.
            after = await in_thread(publish, proc.url,
                                    [event(n, id=f"after-{n}") for n in range(20)])
            await until(pilot, lambda: screen.table.last_seq == after[-1]["seq"]
                        and app.connection == "connected",
                        timeout=15, what="events after the restart, every feed back")
            seqs = shown_seqs(screen)
            assert {r["seq"] for r in before + after} <= set(seqs)
            assert seqs == sorted(set(seqs))  # no duplicates, in order
    finally:
        proc.stop()
