"""Pilot tests of the item detail screen: it follows changes made by someone else
through the HTTP API, keeps the reader's place, and runs the queue's quick actions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from textual.widgets import DataTable, OptionList, TextArea

from console.app import OpsbusConsole
from console.screens.detail import ItemDetailScreen
from console.screens.help import HelpScreen
from console.widgets.action_picker import ActionPicker
from console.widgets.editor import EditorModal
from console.widgets.rows import cursor_key
from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.console_support import event, http, in_thread, publish, until, write_config
from tests.delivery_support import Receiver

RUNBOOK = "https://runbooks.example/restart-pod"
CONFIG = f"""
[[queues]]
name = "ops"
group_key = "{{subject}}"
title = "{{type}} on {{subject}}"
priority = "{{data.severity}}"
actions = [{{ name = "restart-pod", runbook_url = "{RUNBOOK}", description = "Restart it" }}]

[[routes]]
name = "to-ops"
filter = {{ prefix = {{ type = "test.alert" }} }}
targets = ["queue:ops"]
"""


@pytest.fixture(scope="module")
def item_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("console-item")
    proc = BrokerProcess(folder / "data", config=write_config(folder, CONFIG),
                         args=["--allow-private-targets"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def alerts(url: str, subject: str, count: int, first: int = 0) -> int:
    """Publish `count` alerts on `subject`; the id of the item grouping them."""
    publish(url, [event(first + n, id=f"{subject}-{first + n}", type="test.alert",
                        subject=subject, data={"severity": "warning"}) for n in range(count)])
    page = http(f"{url}/v1/todos?queue=ops&state=active&limit=200")
    return int(next(i["id"] for i in page["items"] if i["key"] == subject))


def column(table: DataTable[Any], index: int) -> list[str]:
    return [str(table.get_row_at(row)[index]) for row in range(table.row_count)]


async def open_item(app: OpsbusConsole, pilot: Any, item_id: int) -> ItemDetailScreen:
    app.open_item(item_id)
    await until(pilot, lambda: isinstance(app.screen, ItemDetailScreen), what="item screen")
    screen = app.screen
    assert isinstance(screen, ItemDetailScreen)
    await until(pilot, lambda: screen.ready and app.todo_feed is not None
                and app.connection == "connected", what="item loaded and followed")
    return screen


async def test_changes_by_someone_else_appear_live(item_broker: BrokerProcess) -> None:
    url = item_broker.url
    item_id = await in_thread(alerts, url, "db-live", 3)
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_item(app, pilot, item_id)
        events = screen.query_one("#item-events", DataTable)
        assert events.row_count == 3
        events.move_cursor(row=1)
        await pilot.pause()
        reading = cursor_key(events)
        api = f"{url}/v1/todos/{item_id}"
        await in_thread(http, f"{api}/claim", "POST", {"operator": "bob"})
        await in_thread(http, f"{api}/comment", "POST",
                        {"operator": "bob", "note": "looking at it"})
        await in_thread(alerts, url, "db-live", 1, 3)  # a newer event: a new top row
        history = screen.query_one("#history", DataTable)
        fields = screen.query_one("#fields", DataTable)
        # Live: the screen has no poll, so these can only arrive through the item feed.
        await until(pilot, lambda: "looking at it" in column(history, 3)
                    and events.row_count == 4
                    and fields.get_row("state")[1] == "claimed",
                    what="claim, comment and the new event shown")
        assert fields.get_row("owner")[1] == "bob"
        assert "bob" in column(history, 2)
        assert cursor_key(events) == reading and events.cursor_row == 2


async def test_quick_action_runs_and_shows_its_result(item_broker: BrokerProcess,
                                                      receiver: Receiver) -> None:
    url = item_broker.url
    await in_thread(http, f"{url}/v1/actions/restart-pod", "PUT", {
        "name": "restart-pod", "method": "POST",
        "url": receiver.url + "/pods/{subject}/restart", "body": {"reason": "{reason}"}})
    item_id = await in_thread(alerts, url, "web-9", 1, 10)
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_item(app, pilot, item_id)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ActionPicker), what="action picker")
        option = app.screen.query_one(OptionList).get_option_at_index(0)
        assert RUNBOOK in str(option.prompt)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EditorModal), what="parameters")
        editor = app.screen.query_one(TextArea)
        params = orjson.loads(editor.text)
        assert params["subject"] == "web-9" and params["data.severity"] == "warning"
        editor.load_text(orjson.dumps({**params, "reason": "oom"}).decode())
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, EditorModal), what="ran")
        history = screen.query_one("#history", DataTable)
        await until(pilot, lambda: "actioned" in column(history, 1), timeout=2.0,
                    what="the action in the history")
        [note] = [n for n in column(history, 3) if n.startswith("restart-pod")]
        assert note.startswith("restart-pod ok (200) → seq ")
        [request] = receiver.requests
        assert request.path == "/pods/web-9/restart" and request.json == {"reason": "oom"}
        # enter on the history row opens the result event.
        history.focus()
        history.move_cursor(row=column(history, 1).index("actioned"))
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "EventDetailScreen",
                    what="result event")
        assert app.screen.seq == int(note.rsplit(" ", 1)[1])  # type: ignore[attr-defined]


def help_keys(help: HelpScreen, section: str) -> list[tuple[str, str]]:
    """(key, description) rows of one section of the help table."""
    keys, descriptions = ([str(c) for c in column._cells] for column in help._table().columns)
    start = keys.index(section) + 1
    return list(zip(keys[start:keys.index("", start)], descriptions[start:], strict=False))


@pytest.mark.parametrize("read_only", [False, True])
async def test_footer_and_help_show_the_actions_key(item_broker: BrokerProcess,
                                                    read_only: bool) -> None:
    item_id = await in_thread(alerts, item_broker.url, "keys-1", 1, 20)
    app = OpsbusConsole(item_broker.url, token=ADMIN_TOKEN, operator="ana", read_only=read_only)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_item(app, pilot, item_id)
        shown = {b.binding.action for b in screen.active_bindings.values()
                 if b.binding.show and screen.check_action(b.binding.action, ()) is True}
        assert ("quick_action" in shown) is not read_only
        await pilot.press("?")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert isinstance(app.screen, HelpScreen)
        assert (("x", "Actions") in help_keys(app.screen, "Item detail")) is not read_only
        await pilot.press("escape", "x")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ActionPicker) is not read_only
