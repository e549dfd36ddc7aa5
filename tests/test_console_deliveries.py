"""Pilot tests of the Deliveries screen against a real broker: dead letters arrive live
(not by polling) and the cursor stays on the same delivery across reloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import DataTable

from console.app import OpsbusConsole
from console.screens.deliveries import DeliveriesScreen
from console.widgets.rows import cursor_key
from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.console_support import event, http, in_thread, publish, until, write_config

CONFIG = """
[[queues]]
name = "deadletter"
group_key = "{source}/{id}"
title = "{type} from {source}"

[[subscriptions]]
name = "ci-pull"
type = "pull"
max_deliveries = 1

[[routes]]
name = "to-ci"
filter = { exact = { type = "ci.failed" } }
targets = ["subscription:ci-pull"]
"""


@pytest.fixture(scope="module")
def delivery_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("console-deliveries")
    proc = BrokerProcess(folder / "data", config=write_config(folder, CONFIG)).start()
    try:
        yield proc
    finally:
        proc.stop()


def settle(url: str, want: set[int], reject: set[int]) -> None:
    """Receive the deliveries of the seqs in `want`; reject those in `reject`, ack the
    rest."""
    leases: dict[int, str] = {}
    for _ in range(20):
        for message in http(f"{url}/v1/subscriptions/ci-pull/receive", "POST",
                            {"max": 10, "wait_s": 0.5}):
            leases[message["seq"]] = message["lease"]
        if want <= set(leases):
            break
    assert want <= set(leases), f"received {sorted(leases)}, wanted {sorted(want)}"
    for verb, seqs in (("reject", reject), ("ack", set(leases) - reject)):
        if seqs:
            http(f"{url}/v1/subscriptions/ci-pull/{verb}", "POST",
                 {"leases": [leases[s] for s in seqs]})


def dead_letters(url: str, first: int, count: int) -> list[int]:
    """`count` new dead letters; their seqs."""
    seqs = [r["seq"] for r in publish(url, [event(first + n, id=f"ci-{first + n}",
                                                  type="ci.failed") for n in range(count)])]
    settle(url, set(seqs), set(seqs))
    return seqs


def keys(table: DataTable[Any]) -> list[str]:
    return [str(key.value) for key in table.rows]


async def test_dead_letters_live_and_cursor_kept(delivery_broker: BrokerProcess) -> None:
    url = delivery_broker.url
    await in_thread(dead_letters, url, 0, 3)
    app = OpsbusConsole(url, token=ADMIN_TOKEN, operator="ana", screen="deliveries")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, DeliveriesScreen)
        dead = screen.query_one("#dead", DataTable)
        await until(pilot, lambda: screen.ready and screen.feed is not None
                    and dead.row_count == 3 and app.connection == "connected",
                    what="three dead letters")
        first, second, _ = keys(dead)
        await pilot.press("tab")
        dead.move_cursor(row=1)
        await pilot.pause()
        assert cursor_key(dead) == second
        # Someone retries the first (it is delivered this time) and a new one dies.
        retried = screen.model.dead[int(first)]["seq"]
        await in_thread(http, f"{url}/v1/subscriptions/ci-pull/deliveries/{first}/retry",
                        "POST")
        [new] = await in_thread(lambda: publish(url, [event(9, id="ci-9",
                                                             type="ci.failed")]))
        await in_thread(settle, url, {retried, new["seq"]}, {new["seq"]})
        # Well before the next poll: the dead-letter announcement triggered the reload.
        await until(pilot, lambda: len(keys(dead)) == 3 and first not in keys(dead)
                    and keys(dead)[0] == second, timeout=2.0, what="live dead letters")
        assert cursor_key(dead) == second and dead.cursor_row == 0
        assert screen.query_one("#subscriptions", DataTable).has_focus is False
        await pilot.press("r")  # retry the one under the cursor: the one we were on
        await until(pilot, lambda: second not in keys(dead), what="retried")
