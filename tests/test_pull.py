"""Pull subscriptions over real HTTP: receive, ack, release, reject, renew, lease expiry,
competing consumers, long-poll wake-ups, max deliveries and leases across a restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.broker_process import AUTH, BrokerProcess
from tests.delivery_support import call, events_of_type, eventually, publish, put_object


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("pull")
    proc = BrokerProcess(folder / "data", args=[
        "--delivery-poll-s", "0.1", "--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker on the manual clock: leases, delays and long-poll waits end when the test
    moves time, never because the machine was slow."""
    folder = tmp_path_factory.mktemp("pull-clock")
    proc = BrokerProcess(folder / "data", args=["--delivery-poll-s", "3600",
                                                "--durability", "normal"],
                         test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


async def clock_state(http, proc: BrokerProcess) -> dict:
    return await call(http, "GET", proc.url + "/v1/test/clock", expect=200)


async def waiting_receives(http, proc: BrokerProcess) -> int:
    """Pull receives holding a stream slot: a receive takes its slot, then fixes its
    deadline on the broker's clock, with nothing in between that could let time move."""
    async with http.get(proc.url + "/metrics") as answer:
        text = await answer.text()
    [line] = [x for x in text.splitlines() if x.startswith("opsbus_streams_open ")]
    return int(float(line.split()[1]))


async def pull_sub(http, base: str, **fields) -> tuple[str, str]:
    """A pull subscription for its own event type: (name, type)."""
    name = f"pull-{uuid.uuid4().hex[:8]}"
    etype = f"test.{name}"
    await put_object(http, base, "subscriptions", {
        "name": name, "type": "pull", "filter": {"exact": {"type": etype}}, **fields})
    return name, etype


async def receive(http, base: str, name: str, expect: int = 200, **body):
    return await call(http, "POST", f"{base}/v1/subscriptions/{name}/receive", body,
                      expect=expect)


async def settle(http, base: str, name: str, verb: str, leases: list[str], expect: int = 200,
                 **body):
    return await call(http, "POST", f"{base}/v1/subscriptions/{name}/{verb}",
                      {"leases": leases, **body}, expect=expect)


async def test_receive_then_ack(broker, http):
    name, etype = await pull_sub(http, broker.url)
    sent = [await publish(http, broker.url, type=etype, data={"n": n}) for n in range(3)]
    got = await receive(http, broker.url, name, max=10)
    assert [m["event"]["id"] for m in got] == [s["id"] for s in sent]
    assert [m["seq"] for m in got] == [s["seq"] for s in sent]
    assert all(m["delivery_count"] == 1 for m in got)
    assert await receive(http, broker.url, name) == []  # all leased
    answer = await settle(http, broker.url, name, "ack", [m["lease"] for m in got])
    assert answer == {"acked": 3}
    status = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/status")
    assert status["counts"]["delivered"] == 3 and status["counts"]["leased"] == 0


async def test_release_redelivers_now_or_after_a_delay(clocked, http):
    url = clocked.url
    name, etype = await pull_sub(http, url)
    await publish(http, url, type=etype)
    [first] = await receive(http, url, name)
    await settle(http, url, name, "release", [first["lease"]])
    [second] = await receive(http, url, name)
    assert second["delivery_count"] == 2 and second["lease"] != first["lease"]
    await settle(http, url, name, "release", [second["lease"]], delay=30)
    assert await receive(http, url, name) == []
    await clocked.advance(http, 29)
    assert await receive(http, url, name) == []  # a second before the delay ends
    await clocked.advance(http, 1)
    [third] = await receive(http, url, name)
    assert third["delivery_count"] == 3


async def test_reject_dead_letters(broker, http):
    name, etype = await pull_sub(http, broker.url)
    sent = await publish(http, broker.url, type=etype)
    [msg] = await receive(http, broker.url, name)
    assert await settle(http, broker.url, name, "reject", [msg["lease"]]) == {"rejected": 1}
    [notice] = await events_of_type(http, broker.url, "opsbus.delivery.deadlettered",
                                    subject=name)
    assert notice["causationid"] == sent["id"]
    assert notice["data"]["last_error"] == "rejected by the consumer"


async def test_lease_expiry_redelivers_and_a_late_ack_is_a_conflict(broker, http):
    name, etype = await pull_sub(http, broker.url)
    await publish(http, broker.url, type=etype)
    [first] = await receive(http, broker.url, name, lease_s=0.3)
    [second] = await receive(http, broker.url, name, wait_s=3)
    assert second["delivery_count"] == 2 and second["event"] == first["event"]
    problem = await settle(http, broker.url, name, "ack", [first["lease"]], expect=409)
    assert problem["leases"] == [first["lease"]] and first["lease"] in problem["detail"]
    # The redelivery is unaffected by the failed late ack, and all-or-nothing holds.
    problem = await settle(http, broker.url, name, "ack", [second["lease"], first["lease"]],
                           expect=409)
    assert problem["leases"] == [first["lease"]]
    assert await settle(http, broker.url, name, "ack", [second["lease"]]) == {"acked": 1}
    deliveries = await call(http, "GET",
                            f"{broker.url}/v1/subscriptions/{name}/deliveries?state=delivered")
    [delivery] = deliveries["deliveries"]
    assert [a["outcome"] for a in delivery["attempts_log"]] == ["expired", "acked"]


async def test_renew_extends_a_lease(clocked, http):
    url = clocked.url
    name, etype = await pull_sub(http, url)
    await publish(http, url, type=etype)
    [msg] = await receive(http, url, name, lease_s=40)
    for _ in range(3):
        await clocked.advance(http, 30)
        answer = await settle(http, url, name, "renew", [msg["lease"]], lease_s=40)
        assert answer["renewed"] == 1
    assert await receive(http, url, name) == []  # still held 90 s after a 40 s lease
    await clocked.advance(http, 40)  # the last renewal's 40 s are over
    [again] = await receive(http, url, name)
    assert again["delivery_count"] == 2
    await settle(http, url, name, "ack", [again["lease"]])


async def test_max_deliveries_dead_letters_unacked_events(broker, http):
    name, etype = await pull_sub(http, broker.url, max_deliveries=2)
    sent = await publish(http, broker.url, type=etype)
    for _ in range(2):
        [msg] = await receive(http, broker.url, name, lease_s=0.2, wait_s=3)
    # No third delivery: the sweeper dead-letters it once its last lease expires.

    async def dead():
        return await events_of_type(http, broker.url, "opsbus.delivery.deadlettered",
                                    subject=name)

    [notice] = await eventually(dead)
    assert notice["data"]["event"]["id"] == sent["id"] and notice["data"]["attempts"] == 2
    assert await receive(http, broker.url, name) == []
    await settle(http, broker.url, name, "ack", [msg["lease"]], expect=409)


async def test_long_poll_is_woken_by_a_commit(clocked, http):
    url = clocked.url
    name, etype = await pull_sub(http, url)
    waiting = asyncio.create_task(receive(http, url, name, wait_s=30))
    # The receive holds its slot, its deadline fixed on the broker's clock. Time stands
    # still from here (a count of parked timers is not the signal: the broker's other
    # loops park and wake too), so only the commit can end the wait.

    async def begun() -> bool:
        return await waiting_receives(http, clocked) == 1
    await eventually(begun)
    before = await clock_state(http, clocked)
    await publish(http, url, type=etype)
    [msg] = await asyncio.wait_for(waiting, 10)
    assert msg["event"]["type"] == etype
    assert (await clock_state(http, clocked))["now"] == before["now"]


async def test_empty_long_poll_returns_after_wait(clocked, http):
    url = clocked.url
    name, _ = await pull_sub(http, url)
    waiting = asyncio.create_task(receive(http, url, name, wait_s=30))
    # Not a count of parked timers: the broker's other loops park and wake around the
    # subscription's commit, and an advance before the receive began would move its
    # deadline along with the clock.
    async def begun() -> bool:
        return await waiting_receives(http, clocked) == 1
    await eventually(begun)
    await clocked.advance(http, 29)
    assert not waiting.done()  # its wait ends at 30 s of the broker's clock
    await clocked.advance(http, 1)
    assert await asyncio.wait_for(waiting, 10) == []


async def test_competing_consumers_share_the_work_without_duplicates(broker, http):
    name, etype = await pull_sub(http, broker.url, lease="30s")
    total = 60
    seen: list[str] = []

    async def consumer() -> None:
        while len(seen) < total:
            batch = await receive(http, broker.url, name, max=5, wait_s=1)
            seen.extend(m["event"]["id"] for m in batch)
            if batch:
                await settle(http, broker.url, name, "ack", [m["lease"] for m in batch])

    consumers = [asyncio.create_task(consumer()) for _ in range(4)]
    sent = [(await publish(http, broker.url, type=etype, data={"n": n}))["id"]
            for n in range(total)]
    await asyncio.wait_for(asyncio.gather(*consumers), 20)
    assert sorted(seen) == sorted(sent) and len(seen) == len(set(seen))


async def test_pull_api_errors(broker, http):
    name, _ = await pull_sub(http, broker.url)
    await receive(http, broker.url, name, expect=400, max=0)
    await receive(http, broker.url, name, expect=400, wait_s=600)
    await settle(http, broker.url, name, "ack", [], expect=400)
    await settle(http, broker.url, name, "ack", ["garbage"], expect=400)
    await settle(http, broker.url, name, "ack", ["99999999.1.abc"], expect=409)
    await receive(http, broker.url, "no-such-sub", expect=404)
    push = f"push-{uuid.uuid4().hex[:6]}"
    await put_object(http, broker.url, "subscriptions", {"name": push,
                                                         "url": "http://example.com/"})
    await receive(http, broker.url, push, expect=409)


async def test_leases_survive_a_restart(tmp_path: Path, http):
    proc = BrokerProcess(tmp_path / "data", args=["--delivery-poll-s", "0.1"]).start()
    try:
        await put_object(http, proc.url, "subscriptions", {
            "name": "jobs", "type": "pull", "filter": {"exact": {"type": "test.jobs"}}})
        for n in range(3):
            await publish(http, proc.url, type="test.jobs", data={"n": n})
        held = await receive(http, proc.url, "jobs", max=2, lease_s=60)
        proc.restart()
        async with aiohttp.ClientSession(headers=AUTH) as fresh:  # no old keep-alive
            # The held leases are still held; only the third event is available.
            [free] = await receive(fresh, proc.url, "jobs", max=10)
            assert free["event"]["data"] == {"n": 2}
            answer = await settle(fresh, proc.url, "jobs", "ack",
                                  [m["lease"] for m in [*held, free]])
            assert answer == {"acked": 3}
    finally:
        proc.stop()
