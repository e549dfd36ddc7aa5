"""Pilot tests of the Queues screen: claim, resolve with a note and re-emit change the
broker's state (checked over HTTP), and audit events update the list live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import TextArea

from console.app import OpsbusConsole
from console.screens.queues import QueuesScreen
from console.widgets.editor import EditorModal
from console.widgets.note import NoteModal
from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.console_support import event, http, in_thread, publish, until, write_config


@pytest.fixture(scope="module")
def queue_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("console-queues")
    proc = BrokerProcess(folder / "data", config=write_config(folder)).start()
    try:
        yield proc
    finally:
        proc.stop()


def item(url: str, item_id: int) -> dict[str, Any]:
    return http(f"{url}/v1/todos/{item_id}")


async def open_queues(app: OpsbusConsole, pilot: Any) -> QueuesScreen:
    screen = app.screen
    assert isinstance(screen, QueuesScreen)
    await until(pilot, lambda: screen.ready and app.todo_feed is not None
                and app.connection == "connected", what="queues loaded")
    return screen


async def select(pilot: Any, screen: QueuesScreen, item_id: int) -> None:
    await until(pilot, lambda: str(item_id) in screen.item_table.rows, what=f"item {item_id}")
    screen.item_table.move_cursor(row=screen.item_table.get_row_index(str(item_id)))
    await pilot.pause()


async def test_claim_resolve_with_note_and_live_updates(queue_broker: BrokerProcess) -> None:
    url = queue_broker.url
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana", screen="queues")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_queues(app, pilot)
        # Items opened after the screen loaded arrive through the audit events.
        await in_thread(publish, url, [event(1, id="q-1", type="test.alert", subject="db-1",
                                             data={"severity": "critical"})])
        items = await in_thread(http, f"{url}/v1/todos?queue=ops&state=active")
        target = next(i for i in items["items"] if i["key"] == "db-1")
        await select(pilot, screen, target["id"])
        await pilot.press("c")
        await until(pilot, lambda: app.queues.items[target["id"]]["state"] == "claimed",
                    what="claimed in the list")
        claimed = await in_thread(item, url, target["id"])
        assert (claimed["state"], claimed["owner"]) == ("claimed", "ana")
        # "mine" shows it; "unclaimed" does not.
        await pilot.press("m")
        await until(pilot, lambda: str(target["id"]) in screen.item_table.rows, what="mine")
        await pilot.press("u")
        await until(pilot, lambda: app.queues.view == "unclaimed"
                    and str(target["id"]) not in screen.item_table.rows, what="unclaimed")
        await pilot.press("a")
        await select(pilot, screen, target["id"])
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, NoteModal), what="note prompt")
        await pilot.press(*"restarted the primary", "enter")
        await until(pilot, lambda: target["id"] not in app.queues.items, what="resolved item gone")
        resolved = await in_thread(item, url, target["id"])
        assert resolved["state"] == "resolved"
        assert resolved["resolution"]["note"] == "restarted the primary"
        assert resolved["resolution"]["by"] == "ana"


async def test_reemit_with_edited_data(queue_broker: BrokerProcess) -> None:
    url = queue_broker.url
    await in_thread(publish, url, [event(2, id="q-2", type="test.alert", subject="web-7",
                                         data={"severity": "warning"})])
    items = await in_thread(http, f"{url}/v1/todos?queue=ops&state=active")
    target = next(i for i in items["items"] if i["key"] == "web-7")
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana", screen="queues")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_queues(app, pilot)
        await select(pilot, screen, target["id"])
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EditorModal), what="editor")
        editor = app.screen.query_one(TextArea)
        edited = editor.text.replace('"warning"', '"critical"')
        assert edited != editor.text
        editor.load_text(edited)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, EditorModal), what="sent")
        detail = await in_thread(item, url, target["id"])
        reemitted = [h for h in detail["history"] if h["action"] == "reemitted"]
        assert reemitted and reemitted[0]["operator"] == "ana"
        copy = await in_thread(http, f"{url}/v1/events/{reemitted[0]['event_seq']}")
        assert copy["event"]["reemittedfrom"] == "q-2"
        assert copy["event"]["data"]["severity"] == "critical"


async def test_read_only_hides_state_changing_keys(queue_broker: BrokerProcess) -> None:
    app = OpsbusConsole(queue_broker.url, token=ADMIN_TOKEN,
                        operator="ana", screen="queues", read_only=True)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_queues(app, pilot)
        shown = {b.binding.action for b in screen.active_bindings.values()
                 if screen.check_action(b.binding.action, ()) is not False}
        assert not shown & {"claim", "release", "resolve", "reemit", "comment", "snooze"}
        await pilot.press("d")
        assert not isinstance(app.screen, NoteModal)

