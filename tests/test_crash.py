"""Durability: kill -9 during concurrent publishing; every acknowledged event survives."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.broker_process import AUTH, BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event


@pytest.mark.slow
async def test_sigkill_during_concurrent_publishing_loses_no_acknowledged_event(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    acknowledged: dict[tuple[str, str], int] = {}
    stop = asyncio.Event()
    enough = asyncio.Event()

    async def publisher(session: aiohttp.ClientSession, worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            batch = n % 4 == 0
            events = ([make_event(source=f"crash/{worker}", id=f"{n}-{i}") for i in range(10)]
                      if batch else [make_event(source=f"crash/{worker}", id=str(n))])
            body = orjson.dumps(events if batch else events[0])
            try:
                async with session.post(proc.url + "/v1/events", data=body,
                                        headers=BATCH if batch else STRUCTURED) as resp:
                    if resp.status in (200, 201):
                        answer = await resp.json()
                        for event, result in zip(events, answer if batch else [answer],
                                                 strict=True):
                            acknowledged[(event["source"], event["id"])] = result["seq"]
                        if len(acknowledged) >= 3000:
                            enough.set()
            except (aiohttp.ClientError, ConnectionError):
                pass  # the kill: `stop` is set at once, so the loop ends

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     headers=AUTH) as session:
        workers = [asyncio.create_task(publisher(session, w)) for w in range(16)]
        try:
            await asyncio.wait_for(enough.wait(), 20)
        except TimeoutError:
            pass  # a slow machine: kill with what has been acknowledged so far
        proc.kill()  # SIGKILL while requests are in flight
        stop.set()
        await asyncio.gather(*workers)
        assert len(acknowledged) > 500

        proc.start()
        try:
            stored: dict[tuple[str, str], int] = {}
            seen_seqs: list[int] = []
            after = 0
            while True:
                async with session.get(proc.url + "/v1/events",
                                       params={"after": str(after), "limit": "1000"}) as resp:
                    page = (await resp.json())["events"]
                if not page:
                    break
                for item in page:
                    key = (item["event"]["source"], item["event"]["id"])
                    assert key not in stored, f"{key} stored twice"
                    stored[key] = item["seq"]
                    seen_seqs.append(item["seq"])
                after = page[-1]["seq"]
            missing = [k for k in acknowledged if k not in stored]
            assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
            for key, seq in acknowledged.items():
                assert stored[key] == seq
            assert seen_seqs == sorted(seen_seqs)
        finally:
            proc.stop()
