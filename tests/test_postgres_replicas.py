"""Three `opsbus serve` replicas on one PostgreSQL database behave as one broker: the
same events in the same order on every stream, one winner per claim, each webhook sent
once, configuration shared (docs/postgres.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import STRUCTURED, make_event
from tests.delivery_support import Receiver, call, eventually, put_object
from tests.pg_support import PG_URL, create_schema, drop_schema, with_schema
from tests.sse import read_sse
from tests.todos_support import item_of

CONFIG = """
[[queues]]
name = "ops"
group_key = "{subject}"
title = "{type} on {subject}"

[[routes]]
name = "to-ops"
filter = {exact = {type = "replica.alert"}}
targets = ["queue:ops"]
"""


POLL_S = 5.0
"""The replicas' own poll: slow, so that what arrives sooner came through a wake-up."""


def start_replicas(folder: Path, url: str, count: int = 3, poll_s: float = POLL_S, *,
                   test_clock: bool = False, config: str = CONFIG) -> list[BrokerProcess]:
    """`count` replicas on `url`; with `test_clock` each runs on its own manual clock
    (its polls, retries, leases and cool-downs move only when the test advances it)."""
    (folder / "opsbus.toml").write_text(config)
    replicas = []
    for n in range(count):
        replicas.append(BrokerProcess(folder / f"replica{n}", config=folder / "opsbus.toml",
                                      args=["--store", url, "--allow-private-targets",
                                            "--delivery-poll-s", str(poll_s)],
                                      test_clock=test_clock).start())
    return replicas


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerProcess]]:
    schema = create_schema()
    procs: list[BrokerProcess] = []
    try:
        procs = start_replicas(tmp_path_factory.mktemp("replicas"),
                               with_schema(PG_URL, schema) + "&pool_size=3")
        yield procs
    finally:
        for proc in procs:
            proc.stop()
        drop_schema(schema)


async def post_event(http: aiohttp.ClientSession, base: str, event: dict[str, Any]
                     ) -> dict[str, Any]:
    async with http.post(base + "/v1/events", data=orjson.dumps(event),
                         headers=STRUCTURED) as resp:
        assert resp.status == 201, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def stream_ids(http: aiohttp.ClientSession, base: str, after: int, count: int,
                     opened: asyncio.Event) -> list[tuple[int, str]]:
    """(seq, event id) of the next `count` events on one replica's stream."""
    got: list[tuple[int, str]] = []
    async with http.get(base + "/v1/stream", params={"after": str(after)}) as resp:
        assert resp.status == 200
        opened.set()  # the response started: the stream is subscribed
        async for msg in read_sse(resp):
            if msg.get("event") == "cloudevent":
                got.append((int(msg["id"]), msg["data"]["id"]))
                if len(got) == count:
                    return got
    return got


async def test_every_stream_on_every_replica_sees_the_same_order(
    replicas: list[BrokerProcess], http: aiohttp.ClientSession
) -> None:
    """Publishers spread over the three replicas; a reader on each replica sees every
    event once, in the same strictly increasing seq order."""
    kind = f"replica.spread.{uuid.uuid4().hex[:6]}"
    head = (await call(http, "GET", replicas[0].url + "/readyz"))["last_seq"]
    per_replica = 30
    total = per_replica * len(replicas)
    opened = [asyncio.Event() for _ in replicas]
    readers = [asyncio.create_task(stream_ids(http, r.url, head, total, o))
               for r, o in zip(replicas, opened, strict=True)]
    for o in opened:
        await asyncio.wait_for(o.wait(), 20)

    async def publish_from(replica: BrokerProcess) -> list[dict[str, Any]]:
        return [await post_event(http, replica.url, make_event(type=kind))
                for _ in range(per_replica)]

    answers = await asyncio.gather(*(publish_from(r) for r in replicas))
    views = await asyncio.wait_for(asyncio.gather(*readers), 30)
    published = {(a["seq"], a["id"]) for batch in answers for a in batch}
    assert len(published) == total
    for view in views:
        assert view == sorted(published)  # all of them, once, in seq order
    assert views[0] == views[1] == views[2]


async def test_twenty_concurrent_claims_on_three_replicas_have_one_winner(
    replicas: list[BrokerProcess], http: aiohttp.ClientSession
) -> None:
    subject = f"host-{uuid.uuid4().hex[:6]}"
    answer = await post_event(http, replicas[0].url,
                              make_event(type="replica.alert", subject=subject))
    item = {"id": await item_of(http, replicas[1].url, answer["seq"], "queue:ops")}

    async def claim(n: int) -> tuple[int, str]:
        base = replicas[n % len(replicas)].url
        async with http.post(f"{base}/v1/todos/{item['id']}/claim",
                             json={"operator": f"op{n}"}) as resp:
            return resp.status, (await resp.json())["item"]["owner"] if resp.status == 200 \
                else f"op{n}"

    outcomes = await asyncio.gather(*(claim(n) for n in range(20)))
    winners = [who for status, who in outcomes if status == 200]
    assert len(winners) == 1, outcomes
    assert sorted(status for status, _ in outcomes) == [200] + [409] * 19
    for replica in replicas:
        seen = await call(http, "GET", f"{replica.url}/v1/todos/{item['id']}", expect=200)
        assert seen["state"] == "claimed" and seen["owner"] == winners[0]
    assert [h["action"] for h in seen["history"]].count("claimed") == 1


async def test_a_webhook_created_on_one_replica_is_delivered_once_by_the_cluster(
    replicas: list[BrokerProcess], http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    name = f"hook-{uuid.uuid4().hex[:6]}"
    kind = f"replica.{name}"
    await put_object(http, replicas[0].url, "subscriptions", {
        "name": name, "type": "push", "url": receiver.url + "/hook",
        "filter": {"exact": {"type": kind}}, "timeout": "2s"})

    async def known_everywhere() -> bool:
        for replica in replicas:
            async with http.get(f"{replica.url}/v1/subscriptions/{name}") as resp:
                if resp.status != 200:
                    return False
        return True

    await eventually(known_everywhere)
    sent = [await post_event(http, replicas[n % 3].url, make_event(type=kind))
            for n in range(30)]
    await receiver.wait_for(30, timeout=30)

    async def all_delivered() -> list[dict[str, Any]] | None:
        page = await call(http, "GET", f"{replicas[2].url}/v1/subscriptions/{name}"
                          "/deliveries?limit=100", expect=200)
        done = [d for d in page["deliveries"] if d["state"] == "delivered"]
        return page["deliveries"] if len(done) == 30 else None

    deliveries = await eventually(all_delivered, timeout=30)
    assert all(d["attempts"] == 1 for d in deliveries)  # leased once: sent once
    got = [{k.lower(): v for k, v in r.headers.items()}["ce-id"] for r in receiver.requests]
    assert sorted(got) == sorted(s["id"] for s in sent)


async def test_a_pull_long_poll_wakes_for_an_event_published_on_another_replica(
    replicas: list[BrokerProcess], http: aiohttp.ClientSession
) -> None:
    name = f"pull-{uuid.uuid4().hex[:6]}"
    kind = f"replica.{name}"
    await put_object(http, replicas[0].url, "subscriptions", {
        "name": name, "type": "pull", "filter": {"exact": {"type": kind}}})

    async def known() -> bool:
        async with http.get(f"{replicas[2].url}/v1/subscriptions/{name}") as resp:
            return resp.status == 200

    await eventually(known)
    waiting = asyncio.create_task(call(
        http, "POST", f"{replicas[2].url}/v1/subscriptions/{name}/receive",
        {"max": 1, "wait_s": 20}, expect=200))
    started = asyncio.get_running_loop().time()
    sent = await post_event(http, replicas[0].url, make_event(type=kind))
    [message] = await waiting
    assert message["event"]["id"] == sent["id"]
    # Sooner than the replicas' own poll: the live tail woke the long-poll.
    assert asyncio.get_running_loop().time() - started < POLL_S
