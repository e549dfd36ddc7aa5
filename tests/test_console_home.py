"""Pilot tests of the on-call home: the console opens on every queue's items, critical
on top; new urgent items announce themselves (toast, bell, badge on every screen); key
fields inline; k9s sort keys; marked items claimed in bulk; silences previewed and
marked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import Input

from console.app import OpsbusConsole
from console.models.queues import ALL_QUEUES
from console.screens.detail import ItemDetailScreen
from console.screens.queues import QueuesScreen
from console.screens.stream import StreamScreen
from console.widgets.note import NoteModal
from console.widgets.silence_dialog import SilenceDialog
from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.console_support import (
    ONCALL_CONFIG,
    alert,
    http,
    in_thread,
    item_id,
    publish,
    todo_items,
    until,
    write_config,
)


@pytest.fixture()
def broker(tmp_path: Any) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", config=write_config(tmp_path, ONCALL_CONFIG))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def home(app: OpsbusConsole, pilot: Any) -> QueuesScreen:
    """The console's first screen, once its items are listed and followed."""
    await until(pilot, lambda: isinstance(app.screen, QueuesScreen) and app.screen.ready
                and app.todo_feed is not None and app.connection == "connected",
                what="the home screen")
    assert isinstance(app.screen, QueuesScreen)
    return app.screen


def listed(screen: QueuesScreen) -> list[int]:
    return [int(key) for key in screen.item_table.rows]


async def test_opens_on_every_queue_critical_first_then_oldest(broker: BrokerProcess
                                                                ) -> None:
    url = broker.url
    await in_thread(publish, url, [alert(1, "warning", "web-1"), alert(2, "critical", "db-1"),
                                   alert(3, "info", "web-2"),
                                   alert(4, "critical", "db-2", type="test.db")])
    await in_thread(publish, url, [alert(5, "high", "web-3")])
    ids = {key: await in_thread(item_id, url, key)
           for key in ("web-1", "db-1", "web-2", "db-2", "web-3")}
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await home(app, pilot)
        assert app.queues.queue == ALL_QUEUES
        assert screen.queue_table.cursor_row == 0  # "(all)" is highlighted
        # Critical first (the older one on top), then high, warning, info; both queues.
        expected = [ids["db-1"], ids["db-2"], ids["web-3"], ids["web-1"], ids["web-2"]]
        await until(pilot, lambda: listed(screen) == expected, what="the sorted list")
        # The key fields of each latest event are fetched and shown inline.
        await until(pilot, lambda: all(app.queues.fields_of(i) for i in
                                       app.queues.visible()), what="key fields")
        await until(pilot, lambda: "needs attention" in str(
            screen.item_table.get_row(str(ids["db-1"]))[-1]), what="key fields shown")
        about = str(screen.item_table.get_row(str(ids["db-1"]))[-1])
        assert "db-1 needs attention (2)" in about and "namespace=prod" in about
        assert "https://runbooks.example/db-1" in about
        # k9s sort keys: count, then the same key again reverses; owner; priority back.
        await in_thread(publish, url, [alert(6, "warning", "web-1"), alert(7, "warning",
                                                                          "web-1")])
        await until(pilot, lambda: app.queues.items[ids["web-1"]]["count"] == 3,
                    what="web-1 counted three times")
        await pilot.press("C")
        assert listed(screen)[0] == ids["web-1"] and app.queues.sort == "count"
        await pilot.press("C")
        assert listed(screen)[-1] == ids["web-1"] and app.queues.reverse
        await pilot.press("A")
        assert listed(screen)[0] == ids["web-1"]  # the oldest item
        await pilot.press("P")
        assert listed(screen)[0] == ids["db-1"] and not app.queues.reverse
        # `--screen stream` and contexts choose another start; one key brings it back.
        await pilot.press("2")
        assert isinstance(app.screen, StreamScreen)
        await pilot.press("1")
        assert app.screen is screen


async def test_new_critical_item_toasts_rings_and_badges_every_screen(
        broker: BrokerProcess) -> None:
    url = broker.url
    await in_thread(publish, url, [alert(1, "critical", "old-1")])  # before: no toast
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana", screen="stream")
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.oncall.loaded and app.todo_feed is not None
                    and app.connection == "connected", what="on-call watch")
        assert app.unclaimed_critical == 1 and app.bells == 0
        bar = app.screen.query_one("StatusBar")
        assert "1 unclaimed critical" in str(bar.render())
        await in_thread(publish, url, [alert(2, "critical", "new-1")])
        await until(pilot, lambda: app.unclaimed_critical == 2, what="the badge counts it")
        toasts = [n for n in app._notifications if "new-1" in n.message]
        assert toasts and toasts[0].title == "new CRITICAL item"
        assert toasts[0].severity == "error" and app.bells == 1
        assert "2 unclaimed critical" in str(bar.render())
        # A high item toasts (as a warning) and rings, but is not counted as critical.
        await in_thread(publish, url, [alert(3, "high", "new-2"), alert(4, "warning", "w")])
        await until(pilot, lambda: app.bells == 2, what="the bell for the high item")
        await pilot.pause()
        assert app.unclaimed_critical == 2
        assert not [n for n in app._notifications if "on w " in n.message]
        # Claimed elsewhere: off the badge; the badge is on every screen.
        await in_thread(http, f"{url}/v1/todos/{await in_thread(item_id, url, 'new-1')}"
                        "/claim", "POST", {"operator": "bob"})
        await until(pilot, lambda: app.unclaimed_critical == 1, what="badge after a claim")
        await pilot.press("3")
        assert "1 unclaimed critical" in str(app.screen.query_one("StatusBar").render())
        # `:bell off` stops the bell, not the toast.
        await pilot.press(":", *"bell off", "enter")
        await in_thread(publish, url, [alert(5, "critical", "new-3")])
        await until(pilot, lambda: app.unclaimed_critical == 2, what="the third critical")
        await until(pilot, lambda: any("new-3" in n.message for n in app._notifications),
                    what="its toast")
        assert app.bells == 2


async def test_bell_off_from_the_start(broker: BrokerProcess) -> None:
    app = OpsbusConsole(broker.url, token=ADMIN_TOKEN, operator="ana", bell=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await home(app, pilot)
        await until(pilot, lambda: app.oncall.loaded, what="on-call watch")
        await in_thread(publish, broker.url, [alert(1, "critical", "quiet-1")])
        await until(pilot, lambda: app.unclaimed_critical == 1, what="counted")
        assert app.bells == 0


async def test_mark_with_space_and_claim_resolve_in_bulk(broker: BrokerProcess) -> None:
    url = broker.url
    await in_thread(publish, url, [alert(n, "critical", f"bulk-{n}") for n in range(4)])
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await home(app, pilot)
        await until(pilot, lambda: len(listed(screen)) == 4, what="four items")
        first, second, third, _ = listed(screen)
        screen.item_table.move_cursor(row=0)
        await pilot.press("space", "space", "space")  # marks move the cursor down
        await pilot.press("k", "space")  # and space again unmarks
        assert app.queues.marked == {first, second}
        assert "2 marked" in str(screen.query_one("#items-title").render())
        await pilot.press("c")
        await until(pilot, lambda: all(app.queues.items[i]["state"] == "claimed"
                                       for i in (first, second)), what="both claimed")
        items = {i["id"]: i for i in await in_thread(todo_items, url)}
        assert [items[i]["owner"] for i in (first, second, third)] == ["ana", "ana", None]
        assert not app.queues.marked  # done: marks cleared
        await pilot.press("home", "space", "space")
        assert app.queues.marked == {first, second}
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, NoteModal), what="one note")
        await pilot.press(*"failed over both", "enter")
        await until(pilot, lambda: first not in app.queues.items
                    and second not in app.queues.items, what="both resolved")
        for ident in (first, second):
            detail = await in_thread(http, f"{url}/v1/todos/{ident}")
            assert detail["resolution"]["note"] == "failed over both"


async def test_silence_previews_matches_and_marks_items(broker: BrokerProcess) -> None:
    url = broker.url
    await in_thread(publish, url, [alert(1, "warning", "preview-a"),
                                   alert(2, "warning", "preview-b"),
                                   alert(3, "critical", "prod-a")])
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await home(app, pilot)
        await until(pilot, lambda: len(listed(screen)) == 3, what="three items")
        prod = await in_thread(item_id, url, "prod-a")
        screen.item_table.move_cursor(row=screen.item_table.get_row_index(str(prod)))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SilenceDialog), what="dialog")
        dialog = app.screen
        assert isinstance(dialog, SilenceDialog)
        pattern = dialog.query_one("#pattern", Input)
        assert pattern.value == "prod-a" and dialog.query_one("#queue", Input).value == "ops"
        pattern.value = "preview-*"
        await until(pilot, lambda: dialog.preview is not None
                    and len(dialog.preview.items) == 2, what="preview of two items")
        assert {i["key"] for i in dialog.preview.items} == {"preview-a", "preview-b"}
        assert "would cover 2 active items" in str(
            dialog.query_one("#preview-text").render())
        # An event filter previews the recent events it matches and their items.
        pattern.value = "sql: subject = 'prod-a'"
        await until(pilot, lambda: dialog.preview is not None
                    and [i["key"] for i in dialog.preview.items] == ["prod-a"],
                    what="preview of a filter")
        assert dialog.preview.events
        pattern.value = "preview-*"
        dialog.query_one("#comment", Input).focus()
        await pilot.press(*"rebuilt nightly", "enter")
        await until(pilot, lambda: not isinstance(app.screen, SilenceDialog), what="made")
        [silence] = (await in_thread(http, f"{url}/v1/silences"))["silences"]
        assert silence["matcher"] == {"key": "preview-*"} and silence["queue"] == "ops"
        assert silence["comment"] == "rebuilt nightly" and silence["author"] == "ana"
        def states() -> list[str]:
            return sorted(str(screen.item_table.get_row(str(i["id"]))[4])
                          for i in app.queues.visible())

        await until(pilot, lambda: states() == ["open", "open 🔇", "open 🔇"],
                    what="the two covered items marked")


async def test_item_detail_shows_key_fields_and_notes_in_full(broker: BrokerProcess
                                                              ) -> None:
    url = broker.url
    await in_thread(publish, url, [alert(1, "critical", "full-1",
                                         summary="Replication lag on orders-replica-1")])
    ident = await in_thread(item_id, url, "full-1")
    note = ("restarted the replica after the WAL archive filled up; the lag went from 142 s "
            "to 0 within four minutes and the nightly backup ran on time afterwards")
    await in_thread(http, f"{url}/v1/todos/{ident}/comment", "POST",
                    {"operator": "bob", "note": note})
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(100, 30)) as pilot:
        await home(app, pilot)
        app.open_item(ident)
        await until(pilot, lambda: isinstance(app.screen, ItemDetailScreen)
                    and app.screen.ready, what="item detail")
        screen = app.screen
        assert isinstance(screen, ItemDetailScreen)
        about = str(screen.query_one("#item-about").render())
        assert "Replication lag on orders-replica-1" in about
        assert "https://runbooks.example/full-1" in about and "namespace=prod" in about
        history = screen.query_one("#history")
        row = next(r for r in range(history.row_count)  # type: ignore[attr-defined]
                   if history.get_row_at(r)[1] == "commented")  # type: ignore[attr-defined]
        # The whole note is in the cell and the row is as tall as its wrapped text.
        assert history.get_row_at(row)[3] == note  # type: ignore[attr-defined]
        height = history.rows[history.ordered_rows[row].key].height  # type: ignore[attr-defined]
        assert height >= 3
