"""SIGTERM drains: in-flight requests and webhook deliveries finish within the grace period."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.broker_process import BrokerProcess
from tests.conftest import make_event
from tests.delivery_support import Received, Receiver
from tests.ops_support import wait_until_refused


def drain_config(folder: Path, upstream: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "opsbus.toml"
    config.write_text(f"""
[[proxy]]
name = "slow"
upstream = "{upstream}"

[[subscriptions]]
name = "hook"
type = "push"
url = "{upstream}/hook"
filter = {{ exact = {{ type = "drain.test" }} }}
timeout = "60s"
""")
    return config


async def held_receiver(release: asyncio.Event) -> Receiver:
    """A receiver that answers nothing until `release` is set."""
    receiver = await Receiver().start()

    async def reply(got: Received) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"answered": got.path})

    receiver.reply = reply
    return receiver


async def test_sigterm_lets_in_flight_requests_and_deliveries_finish(
    tmp_path: Path, http: aiohttp.ClientSession
):
    release = asyncio.Event()
    receiver = await held_receiver(release)
    try:
        config = drain_config(tmp_path, receiver.url)
        proc = BrokerProcess(tmp_path / "data", config=config, args=[
            "--allow-private-targets", "--shutdown-grace-s", "30"]).start()
        async with http.post(proc.url + "/v1/events", json=make_event(type="drain.test"),
                             headers={"Content-Type": "application/cloudevents+json"}
                             ) as resp:
            assert resp.status == 201
        await receiver.wait_for(1)  # the webhook call is in flight
        call = asyncio.create_task(http.get(proc.url + "/proxy/slow/work"))
        await receiver.wait_for(2)  # and so is a proxied request
        assert proc.proc is not None
        proc.proc.terminate()
        await asyncio.to_thread(wait_until_refused, proc.port)  # shutdown has begun
        release.set()
        answer = await call
        assert answer.status == 200 and await answer.json() == {"answered": "/work"}
        assert await asyncio.to_thread(proc.proc.wait, 30) == 0
        proc.proc = None

        proc.start()
        try:
            async with http.get(proc.url + "/v1/subscriptions/hook/deliveries") as resp:
                [delivery] = (await resp.json())["deliveries"]
            assert (delivery["state"], delivery["attempts"]) == ("delivered", 1)
            async with http.get(proc.url + "/v1/events",
                                params={"source": "opsbus/proxy", "after": "0"}) as resp:
                calls = (await resp.json())["events"]
            assert [c["event"]["data"]["path"] for c in calls] == ["/work"]
        finally:
            proc.stop()
        assert [r.path for r in receiver.requests] == ["/hook", "/work"]
    finally:
        release.set()
        await receiver.stop()


async def test_work_still_running_after_the_grace_period_does_not_hold_the_stop(
    tmp_path: Path, http: aiohttp.ClientSession
):
    release = asyncio.Event()
    receiver = await held_receiver(release)
    try:
        config = drain_config(tmp_path, receiver.url)
        proc = BrokerProcess(tmp_path / "data", config=config, args=[
            "--allow-private-targets", "--shutdown-grace-s", "1"]).start()
        call = asyncio.create_task(http.get(proc.url + "/proxy/slow/forever"))
        await receiver.wait_for(1)
        assert proc.proc is not None
        proc.proc.terminate()
        # The held call never finishes until `release` (after the stop): a stop that waited
        # for it would never end, so ending at all is the proof (30 s is only a deadline).
        assert await asyncio.to_thread(proc.proc.wait, 30) == 0
        proc.proc = None
        try:
            answer = await call
            assert answer.status >= 500
        except aiohttp.ClientError:
            pass  # the connection was closed under it: the client sees it and retries
    finally:
        release.set()
        await receiver.stop()
