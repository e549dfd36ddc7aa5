"""The circuit breaker of a webhook is one breaker for the whole cluster: when a replica
opens it the others stop sending too, and after the cool-down exactly one replica sends
the probe (docs/postgres.md, section 7). Every replica runs on the manual clock: the
cool-down ends because the test moved time past it, not because time went by."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.broker_process import BrokerProcess
from tests.conftest import make_event
from tests.delivery_support import Receiver, call, events_of_type, eventually, put_object
from tests.pg_support import PG_URL, create_schema, drop_schema, with_schema
from tests.test_postgres_replicas import post_event, start_replicas

COOLDOWN_S = 60


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerProcess]]:
    schema = create_schema()
    procs: list[BrokerProcess] = []
    try:
        procs = start_replicas(tmp_path_factory.mktemp("breaker"),
                               with_schema(PG_URL, schema) + "&pool_size=3",
                               poll_s=3600, test_clock=True)
        yield procs
    finally:
        for proc in procs:
            proc.stop()
        drop_schema(schema)


async def advance_all(http: aiohttp.ClientSession, cluster: list[BrokerProcess],
                      seconds: float) -> None:
    """Move every replica's clock; each answers once the passes it woke are done."""
    for replica in cluster:
        await replica.advance(http, seconds)


async def test_one_replica_opens_the_breaker_for_all_and_one_probes(
    cluster: list[BrokerProcess], http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    name = f"hook-{uuid.uuid4().hex[:6]}"
    kind = f"breaker.{name}"
    healthy = False

    def reply(_got: Any) -> web.Response:
        return web.Response(status=200 if healthy else 503)

    receiver.reply = reply
    await put_object(http, cluster[0].url, "subscriptions", {
        "name": name, "type": "push", "url": receiver.url + "/hook",
        "filter": {"exact": {"type": kind}}, "timeout": "30s",
        "breaker": {"failures": 2, "cooldown": f"{COOLDOWN_S}s"},
        "retry": {"max_attempts": 100, "backoff": "1s", "max_backoff": "1s",
                  "max_age": "1d"}})

    async def status(replica: BrokerProcess) -> dict[str, Any]:
        return await call(http, "GET", f"{replica.url}/v1/subscriptions/{name}/status",
                          expect=200)

    async def known_everywhere() -> bool:
        for replica in cluster:
            async with http.get(f"{replica.url}/v1/subscriptions/{name}") as resp:
                if resp.status != 200:
                    return False
        return True

    await eventually(known_everywhere)
    await post_event(http, cluster[0].url, make_event(type=kind))

    async def states() -> set[str]:
        return {(await status(r))["state"] for r in cluster}

    async def suspended() -> bool:
        return await states() == {"suspended"}

    # The failure is retried a second later (by whichever replica sees it due first:
    # their clocks started a little apart); the second failure opens the breaker.
    await receiver.wait_for(1)
    await advance_all(http, cluster, 1)
    await receiver.wait_for(2)
    await eventually(suspended)
    assert len(receiver.requests) == 2
    for replica in cluster:
        seen = await status(replica)
        assert seen["breaker"]["consecutive_failures"] == 2, seen
        assert seen["breaker"]["probe_in_s"] > COOLDOWN_S - 60

    async def to_the_probe(offset: float) -> None:
        """Move each replica's clock to `offset` seconds from its own probe time (the
        replicas' clocks started a little apart, so each is asked first)."""
        waits = [(await status(r))["breaker"]["probe_in_s"] for r in cluster]
        for replica, probe_in in zip(cluster, waits, strict=True):
            await replica.advance(http, max(0.0, probe_in + offset))

    # While open, no replica sends anything: not the retry, not new events published
    # on every replica, however often each one makes its pass.
    sent = [await post_event(http, r.url, make_event(type=kind)) for r in cluster]
    await to_the_probe(-1)
    assert len(receiver.requests) == 2

    # The cool-down ends on every replica: exactly one probe, which fails and reopens.
    await to_the_probe(1)
    await receiver.wait_for(3)

    async def probed() -> bool:
        return (await status(cluster[0]))["breaker"]["consecutive_failures"] == 3

    await eventually(probed)
    await to_the_probe(-1)
    assert len(receiver.requests) == 3
    assert await suspended()

    # The receiver is back: the next probe succeeds, one replica announces it, and
    # every delivery goes out once (without moving any clock further).
    healthy = True
    await to_the_probe(1)

    async def all_delivered() -> bool:
        counts = (await status(cluster[1]))["counts"]
        return counts["delivered"] == 1 + len(sent)

    await eventually(all_delivered)
    assert await states() == {"active"}
    for what in ("suspended", "resumed"):
        announced = await events_of_type(http, cluster[2].url,
                                         f"opsbus.subscription.{what}", subject=name)
        assert len(announced) == 1, (what, announced)
    ids = [{k.lower(): v for k, v in r.headers.items()}["ce-id"] for r in receiver.requests[3:]]
    assert sorted(ids) == sorted([ids[0], *(s["id"] for s in sent)])  # each sent once
    assert len(set(ids)) == len(ids)
