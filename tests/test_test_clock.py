"""A broker on the manual clock (`--test-clock`): time moves only when a test advances it,
so lease expiry, sweeps and retries happen exactly then (real broker process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess
from tests.todos_support import item_of, op, publish, todo, work_event, write_config

CONFIG = """
[[queues]]
name = "work"
lease = "1m"

[[routes]]
name = "work"
filter = { exact = { type = "test.work" } }
targets = ["queue:work"]
"""


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[BrokerProcess]:
    # Sweeps every 15 seconds (a quarter of the lease), never on their own. A minute's
    # lease, not an hour's: every second advanced runs the broker's periodic passes.
    proc = BrokerProcess(tmp_path / "data", config=write_config(tmp_path, CONFIG),
                         args=["--todo-sweep-s", "60"], test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_claim_whose_lease_lapsed_before_the_sweep_can_be_taken(clocked, http):
    url = clocked.url
    item = await item_of(http, url, await publish(http, url, work_event()))
    await clocked.advance(http, 1)
    status, claimed = await op(http, url, item, "claim", operator="alice")
    assert status == 200 and claimed["item"]["lease_expires"] is not None
    # Sweeps run at 15, 30, 45 and 60 seconds: all before the lease ends (at 61 s).
    await clocked.advance(http, 60.5)
    assert (await todo(http, url, item))["owner"] == "alice"
    status, taken = await op(http, url, item, "claim", operator="bob")
    assert status == 200, taken
    assert taken["item"]["owner"] == "bob"


async def test_the_sweeper_returns_a_lapsed_claim_when_its_time_comes(clocked, http):
    url = clocked.url
    item = await item_of(http, url, await publish(http, url, work_event()))
    await clocked.advance(http, 1)
    await op(http, url, item, "claim", operator="alice")
    await clocked.advance(http, 59)         # one second before the lease ends
    assert (await todo(http, url, item))["state"] == "claimed"
    await clocked.advance(http, 15)         # the next sweep sees it lapsed
    after = await todo(http, url, item)
    assert after["state"] == "open" and after["owner"] is None
    assert after["history"][-1]["detail"]["lease_expired"] is True


async def test_the_clock_endpoint_is_refused_on_the_system_clock(broker, http):
    async with http.post(broker.url + "/v1/test/clock", json={"advance": 1}) as resp:
        assert resp.status == 404
        assert "--test-clock" in (await resp.json())["detail"]


async def test_the_clock_endpoint_checks_what_it_is_given(clocked, http):
    for body in ({"advance": -1}, {"advance": "1s"}, {"advance": True}, {"jump": 1}):
        async with http.post(clocked.url + "/v1/test/clock", json=body) as resp:
            assert resp.status == 400, body
    before = await clocked.advance(http, 0)
    after = await clocked.advance(http, 2.5)
    assert after["monotonic"] - before["monotonic"] == 2.5
    assert after["now"] > before["now"]
