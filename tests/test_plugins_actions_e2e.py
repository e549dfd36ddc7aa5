"""Plugin action kinds run by the real actions runner: `[[actions]] kind = "shell" | "notify"`."""

from __future__ import annotations

import stat
import sys
import textwrap
from collections.abc import Iterator

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import STRUCTURED, make_event
from tests.plugin_helpers import events_of, eventually
from tests.upstream import Upstream


@pytest.fixture(scope="module")
def receiver() -> Iterator[Upstream]:
    """A local HTTP receiver standing in for a Slack incoming webhook."""
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, receiver: Upstream
           ) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("actions")
    script = root / "disk-report.py"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      "event = json.load(sys.stdin)\n"
                      "print('cleaned', event['data']['host'])\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent(f"""
        [[actions]]
        name = "clean-disk"
        kind = "shell"
        command = ["{script}"]
        timeout = "5s"
        retries = 0

        [[actions]]
        name = "tell-channel"
        kind = "notify"
        url = "{receiver.url}/api/v1/orders"
        text = "P1 opened: {{data.item.title}}"
        retries = 0

        [[queues]]
        name = "incidents"
        group_key = "{{subject}}"
        title = "{{data.summary}}"
        priority = "{{data.priority}}"

        [[routes]]
        name = "disk-full"
        filter = {{ exact = {{ type = "disk.usage.high" }} }}
        targets = ["action:clean-disk"]

        [[routes]]
        name = "incidents"
        filter = {{ exact = {{ type = "incident.reported" }} }}
        targets = ["queue:incidents"]

        [[routes]]
        name = "p1-to-channel"
        filter = {{ sql = "type = 'opsbus.todo.opened' AND data.item.priority = 'P1'" }}
        targets = ["action:tell-channel"]
    """))
    proc = BrokerProcess(root / "data", config=config,
                         args=["--durability", "off", "--allow-private-targets"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def publish(http, broker, event: dict) -> None:
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(event),
                         headers=STRUCTURED) as resp:
        assert resp.status == 201, await resp.text()


async def test_shell_action_result_comes_back_as_an_event(broker, http):
    event = make_event(type="disk.usage.high", data={"host": "logs-es-2", "pct": 91})
    await publish(http, broker, event)

    async def result() -> dict | None:
        found = await events_of(http, broker, source="opsbus/actions")
        return next((e for e in found if e.get("causationid") == event["id"]), None)

    outcome = await eventually(result)
    assert outcome["type"] == "opsbus.action.succeeded", outcome
    assert outcome["data"]["response"]["body"] == "cleaned logs-es-2\n"


async def test_notify_tells_the_channel_when_a_p1_item_opens(broker, receiver, http):
    await publish(http, broker, make_event(type="incident.reported", subject="orders-api",
                                           data={"summary": "Orders API 5xx", "priority": "P1"}))
    await publish(http, broker, make_event(type="incident.reported", subject="wiki",
                                           data={"summary": "Wiki slow", "priority": "P3"}))

    async def told() -> list | None:
        bodies = [orjson.loads(s["body"]) for s in receiver.seen if s["method"] == "POST"]
        return [b for b in bodies if "text" in b] or None

    assert await eventually(told) == [{"text": "P1 opened: Orders API 5xx"}]

    async def recorded() -> bool:
        # The result event is committed after the receiver has answered.
        succeeded = await events_of(http, broker, type="opsbus.action.succeeded")
        return any(e["data"]["action"] == "tell-channel" for e in succeeded)

    assert await eventually(recorded)
