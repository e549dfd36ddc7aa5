"""Pilot tests of the Catalog screen against a real broker: key 6 opens it, it lists
every source and type with the chosen one's shape, and a drift announcement marks and
reloads it live (not by polling)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import DataTable

from console.app import OpsbusConsole
from console.models.catalog import row_key
from console.screens.catalog import REFRESH_S, CatalogScreen
from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.console_support import event, in_thread, publish, until, write_config

LEARN = 2


@pytest.fixture(scope="module")
def catalog_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("console-catalog")
    proc = BrokerProcess(folder / "data", config=write_config(folder, ""),
                         args=["--durability", "off", "--catalog-learn-events",
                               str(LEARN)]).start()
    try:
        yield proc
    finally:
        proc.stop()


def texts(table: DataTable[Any], row: str) -> list[str]:
    return [str(cell) for cell in table.get_row(row)]


async def test_catalog_lists_shapes_and_follows_drift(catalog_broker: BrokerProcess) -> None:
    url = catalog_broker.url
    await in_thread(publish, url, [event(n, type="deploy.finished") for n in range(LEARN)])
    await in_thread(publish, url, [{**event(10 + n, type="backup.done"),
                                    "data": {"ok": True, "bytes": n}} for n in range(3)])
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, CatalogScreen)
        entries = screen.query_one("#entries", DataTable)
        shape = screen.query_one("#shape", DataTable)
        deploy = row_key(("tests/console", "deploy.finished"))
        backup = row_key(("tests/console", "backup.done"))
        await until(pilot, lambda: screen.ready and screen.feed is not None
                    and entries.row_count == 2 and shape.row_count > 0,
                    what="two catalog entries and a shape")
        assert texts(entries, backup)[:3] == ["tests/console", "backup.done", "3"]
        assert texts(entries, deploy)[2] == "2"
        # The first row's shape: backup.done sorts first.
        assert screen.model.shape_of == ("tests/console", "backup.done")
        assert texts(shape, "data.bytes") == ["data.bytes", "integer", "required", "3"]

        entries.move_cursor(row=1)
        await until(pilot, lambda: screen.model.shape_of == ("tests/console",
                                                             "deploy.finished")
                    and shape.row_count == 3, what="the deploy shape")
        assert texts(shape, "data.summary")[:3] == ["data.summary", "string", "required"]

        # A producer changes shape: the announcement reloads the view well before the
        # periodic refresh would.
        assert REFRESH_S >= 10
        changed = {**event(50, type="deploy.finished"), "data": {"n": "50"}}
        await in_thread(publish, url, [changed])
        await until(pilot, lambda: texts(entries, deploy)[2] == "3"
                    and texts(entries, deploy)[-1] == "CHANGED", timeout=5.0,
                    what="the drift marked live")
        await until(pilot, lambda: texts(shape, "data.n")[1] == "integer|string",
                    what="the retyped field in the shape")
        assert texts(shape, "data.summary")[2] == "optional"
        assert entries.has_focus
        await pilot.press("tab")
        assert shape.has_focus
