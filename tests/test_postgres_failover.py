"""A replica SIGKILLed under load: every acknowledged event is in the log once, and the
pull leases and webhook deliveries it held are taken over by the others once they
expire. Every replica runs on the manual clock: the leases lapse because the test moves
the survivors' clocks past them, not because time went by."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import STRUCTURED, make_event
from tests.delivery_support import Receiver, call, eventually, put_object
from tests.pg_support import PG_URL, create_schema, drop_schema, with_schema
from tests.test_postgres_replicas import start_replicas

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerProcess]]:
    schema = create_schema()
    procs: list[BrokerProcess] = []
    try:
        procs = start_replicas(tmp_path_factory.mktemp("failover"),
                               with_schema(PG_URL, schema) + "&pool_size=3", poll_s=1,
                               test_clock=True)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        drop_schema(schema)


async def test_a_killed_replica_loses_no_acknowledged_event_and_its_work_moves_on(
    cluster: list[BrokerProcess], http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    a, b, victim = cluster
    tag = uuid.uuid4().hex[:6]
    pull_type, push_type = f"failover.pull.{tag}", f"failover.push.{tag}"
    await put_object(http, a.url, "subscriptions", {
        "name": f"pull-{tag}", "type": "pull", "filter": {"exact": {"type": pull_type}}})
    await put_object(http, a.url, "subscriptions", {
        "name": f"push-{tag}", "type": "push", "url": receiver.url + "/hook",
        "filter": {"exact": {"type": push_type}}, "timeout": "1s",
        "retry": {"backoff": "100ms", "max_backoff": "200ms", "max_attempts": 10}})

    async def everywhere() -> bool:
        for replica in cluster:
            async with http.get(f"{replica.url}/v1/subscriptions/push-{tag}") as resp:
                if resp.status != 200:
                    return False
        return True

    await eventually(everywhere)

    # The victim holds work when it dies: a pull lease, and webhook calls in flight
    # (the receiver keeps them hanging).
    pulled = [await publish(http, victim.url, make_event(type=pull_type)) for _ in range(3)]
    held = await call(http, "POST", f"{victim.url}/v1/subscriptions/pull-{tag}/receive",
                      {"max": 10, "lease_s": 2}, expect=200)
    assert sorted(m["event"]["id"] for m in held) == sorted(p["id"] for p in pulled)
    gate = asyncio.Event()
    calls: Counter[str] = Counter()

    async def hang_then_accept(got: Any) -> Any:
        from aiohttp import web

        headers = {k.lower(): v for k, v in got.headers.items()}
        calls[headers["ce-id"]] += 1  # binary mode: the event's id is a header
        await gate.wait()
        return web.json_response({"ok": True})

    receiver.reply = hang_then_accept
    pushed = [await publish(http, victim.url, make_event(type=push_type)) for _ in range(4)]
    await receiver.wait_for(4, timeout=20)

    # Load on every replica, and the kill in the middle of it.
    acked: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def publisher(replica: BrokerProcess, n: int) -> None:
        while not stop.is_set():
            event = make_event(type=f"failover.load.{tag}", subject=f"p{n}")
            try:
                acked.append(await publish(http, replica.url, event))
            except (aiohttp.ClientError, AssertionError):
                if replica is victim:
                    return  # it is gone: the answer never came, nothing was promised
                raise

    load = [asyncio.create_task(publisher(r, n)) for n, r in enumerate(cluster * 2)]
    await eventually(lambda: _at_least(acked, 60), timeout=60)
    victim.kill()
    before_kill = len(acked)
    await eventually(lambda: _at_least(acked, before_kill + 40), timeout=60)
    stop.set()
    await asyncio.gather(*load)
    gate.set()

    # Every acknowledged event is stored exactly once, and the log has no gap.
    log = await read_log(http, a.url)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    ids = Counter(e["event"]["id"] for e in log)
    assert all(ids[ack["id"]] == 1 for ack in acked), "an acknowledged event is missing"
    assert {ack["seq"] for ack in acked} <= {e["seq"] for e in log}

    # Time passes on the survivors, beyond the victim's leases (its clock started a
    # little after theirs: the margin covers that).
    for survivor in (a, b):
        await survivor.advance(http, 30)

    # The pull lease the victim granted expired: another replica hands the events out.
    again = await call(http, "POST", f"{b.url}/v1/subscriptions/pull-{tag}/receive",
                       {"max": 10}, expect=200)
    assert sorted(m["event"]["id"] for m in again) == sorted(p["id"] for p in pulled)
    assert all(m["delivery_count"] == 2 for m in again)

    # The webhook calls the victim had in flight are sent again by the survivors.
    async def all_delivered() -> list[dict[str, Any]] | None:
        page = await call(http, "GET", f"{b.url}/v1/subscriptions/push-{tag}/deliveries",
                          expect=200)
        done = [d for d in page["deliveries"] if d["state"] == "delivered"]
        return page["deliveries"] if len(done) == len(pushed) else None

    deliveries = await eventually(all_delivered, timeout=60)
    assert all(calls[p["id"]] >= 1 for p in pushed)
    assert any(d["attempts"] >= 2 for d in deliveries)  # taken over after the lease lapsed


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def publish(http: aiohttp.ClientSession, base: str, event: dict[str, Any]
                  ) -> dict[str, Any]:
    async with http.post(base + "/v1/events", data=orjson.dumps(event), headers=STRUCTURED,
                         timeout=aiohttp.ClientTimeout(total=30)) as resp:
        assert resp.status == 201, await resp.text()
        return {**await resp.json(), "event": event}


async def read_log(http: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await call(http, "GET", f"{base}/v1/events?after={after}&limit=1000",
                          expect=200)
        if not page["events"]:
            return found
        found += page["events"]
        after = page["events"][-1]["seq"]
