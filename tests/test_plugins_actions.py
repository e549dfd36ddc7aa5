"""The shipped action kinds `shell` and `notify`, run through the plugin host as the actions
runner calls them (`broker.action_kinds.get(kind)(spec, event)`)."""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from broker.core import Broker
from broker.events import new_event
from broker.settings import Settings

EVENT = new_event(type="opsbus.todo.opened", source="opsbus/todos", subject="42",
                  data={"item": {"id": 42, "title": "OrdersApiHighErrorRate on orders-api",
                                 "priority": "P1"}})


async def started(tmp: Path, **settings: Any) -> Broker:
    broker = Broker(Settings(data_dir=str(tmp), durability="off", **settings))
    await broker.start()
    await broker.plugins.loaded.wait()
    return broker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    the_broker = await started(tmp_path / "data", allow_private_targets=True)
    yield the_broker
    await the_broker.stop()


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "action.py"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting to be reaped has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def run(broker: Broker, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    run = broker.action_kinds.get(kind)
    assert run is not None, f"no plugin provides action kind {kind}"
    result: dict[str, Any] = await run(spec, EVENT)
    return result


async def test_shell_gets_the_event_on_stdin_and_exit_zero_succeeds(broker, tmp_path):
    command = script(tmp_path, "import json, os, sys\n"
                     "event = json.load(sys.stdin)\n"
                     "print(event['data']['item']['title'], os.environ['OPSBUS_EVENT_TYPE'],"
                     " os.environ['REGION'], sys.argv[1])\n")
    outcome = await run(broker, "shell", {"name": "t", "command": [command, "$(rm -rf /)"],
                                          "env": {"REGION": "eu1"}})
    assert outcome["ok"] is True and outcome["status"] == 0
    # The argument reached the script verbatim: no shell saw it.
    assert outcome["body"] == ("OrdersApiHighErrorRate on orders-api opsbus.todo.opened eu1"
                               " $(rm -rf /)\n")
    assert outcome["request"]["command"][0] == command


async def test_shell_failure_timeout_and_output_cap(broker, tmp_path):
    failing = script(tmp_path, "import sys\nprint('partial')\n"
                     "print('disk is read-only', file=sys.stderr)\nsys.exit(3)\n")
    outcome = await run(broker, "shell", {"name": "t", "command": [failing]})
    assert outcome["ok"] is False and outcome["status"] == 3
    assert outcome["body"] == "partial\n" and "disk is read-only" in outcome["error"]

    # A command that would run for an hour: the timeout ends it (its process is gone when
    # the outcome is known), rather than the outcome waiting for it.
    pid_file = tmp_path / "slow.pid"
    slow = script(tmp_path, f"import os, time\nopen({str(pid_file)!r}, 'w').write("
                            "str(os.getpid()))\ntime.sleep(3600)\n")
    outcome = await run(broker, "shell", {"name": "t", "command": [slow], "timeout": 0.5})
    assert outcome["ok"] is False and "within 0.5s" in outcome["error"]
    assert not process_alive(int(pid_file.read_text()))

    chatty = script(tmp_path, "import sys\nsys.stdout.write('x' * 1_000_000)\n")
    outcome = await run(broker, "shell", {"name": "t", "command": [chatty], "max_output": 100})
    assert outcome["ok"] is True and outcome["body"] == "x" * 100

    outcome = await run(broker, "shell", {"name": "t", "command": [str(tmp_path / "missing")]})
    assert outcome["ok"] is False and "cannot run" in outcome["error"]
    outcome = await run(broker, "shell", {"name": "t", "command": "rm -rf /"})
    assert outcome["ok"] is False and "non-empty list" in outcome["error"]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local Slack-compatible incoming webhook that records what it receives."""
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no_service")

    app = web.Application()
    app.router.add_post("/services/T000/B000/XXXX", hook)
    app.router.add_post("/gone", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", got
    await runner.cleanup()


async def test_notify_posts_the_rendered_text(broker, receiver, monkeypatch):
    base, got = receiver
    monkeypatch.setenv("OPSBUS_TEST_SLACK_URL", base + "/services/T000/B000/XXXX")
    outcome = await run(broker, "notify", {"name": "tell", "url_env": "OPSBUS_TEST_SLACK_URL",
                                           "text": "P1 opened: {data.item.title}",
                                           "username": "opsbus"})
    assert outcome["ok"] is True and outcome["status"] == 200, outcome
    assert got == [{"text": "P1 opened: OrdersApiHighErrorRate on orders-api",
                    "username": "opsbus"}]
    assert outcome["request"]["url"] == "$OPSBUS_TEST_SLACK_URL"  # the secret URL stays out

    outcome = await run(broker, "notify", {"name": "tell", "url": base + "/gone", "text": "x"})
    assert outcome["ok"] is False and outcome["status"] == 404


async def test_notify_refuses_a_local_receiver_without_allow_private_targets(tmp_path,
                                                                             receiver):
    base, got = receiver
    strict = await started(tmp_path / "strict")
    try:
        outcome = await run(strict, "notify", {"name": "tell", "text": "x",
                                               "url": base + "/services/T000/B000/XXXX"})
    finally:
        await strict.stop()
    assert outcome["ok"] is False and "allow_private_targets" in outcome["error"]
    assert got == []


async def test_a_raising_action_is_a_failed_result_not_a_crash(broker):
    outcome = await run(broker, "notify", {"name": "tell", "url": "http://x", "text": "{"})
    assert outcome["ok"] is False and "plugin notify" in outcome["error"]
    await asyncio.sleep(0)
