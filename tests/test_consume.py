"""`opsbus consume` end to end: a real broker, the real CLI, a shell script per event."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker_process import ROOT, BrokerProcess
from tests.delivery_support import call, events_of_type, eventually, publish, put_object

SCRIPT = r"""#!/bin/sh
input=$(cat)
echo "$OPSBUS_EVENT_ID|$OPSBUS_EVENT_TYPE|$OPSBUS_EVENT_SOURCE|$OPSBUS_EVENT_SUBJECT|\
$OPSBUS_EVENT_SEQ|$OPSBUS_DELIVERY_COUNT" >> "$LOG"
printf '%s\n' "$input" >> "$LOG.json"
# A command that takes as long as the test says: it finishes once $GATE exists.
if [ -n "$GATE" ]; then while [ ! -e "$GATE" ]; do sleep 0.01; done; fi
case "$OPSBUS_EVENT_SUBJECT" in
  fail) exit 3 ;;
  retry) if [ "$OPSBUS_DELIVERY_COUNT" = "1" ]; then exit 75; fi ;;
esac
printf '{"type": "test.handled", "subject": "%s", "data": {"ok": true}}\n' "$OPSBUS_EVENT_SUBJECT"
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("consume")
    proc = BrokerProcess(folder / "data", args=["--delivery-poll-s", "0.1",
                                                "--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def pull_sub(http, base: str) -> tuple[str, str]:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    etype = f"test.{name}"
    await put_object(http, base, "subscriptions", {
        "name": name, "type": "pull", "lease": "5s", "filter": {"exact": {"type": etype}}})
    return name, etype


async def start_consume(base: str, tmp_path: Path, name: str, *options: str,
                        gate: Path | None = None) -> asyncio.subprocess.Process:
    """`opsbus consume` running the script; with `gate`, each command runs until that
    file exists."""
    script = tmp_path / "handle.sh"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG": str(tmp_path / "log"),
           "GATE": str(gate or "")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker", "consume", name, *options, "--url", base, "--wait", "1",
        "--", "sh", str(script), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)


async def test_consume_runs_the_script_per_event(broker, http, tmp_path):
    name, etype = await pull_sub(http, broker.url)
    sent = {}
    for subject in ("ok1", "ok2", "fail", "retry"):
        sent[subject] = await publish(http, broker.url, type=etype, subject=subject,
                                      correlationid="inc-42", data={"subject": subject})
    proc = await start_consume(broker.url, tmp_path, name, "--max", "5", "--json")
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    summary = orjson.loads(stdout)
    assert summary | {"seconds": 0} == {
        "subscription": name, "processed": 5, "acked": 3, "released": 1, "rejected": 1,
        "published": 3, "lease_lost": 0, "seconds": 0}

    runs = [line.split("|") for line in (tmp_path / "log").read_text().splitlines()]
    by_subject = {}
    for event_id, etype_seen, source, subject, seq, count in runs:
        assert etype_seen == etype and source == "tests/suite"
        assert event_id == sent[subject]["id"] and int(seq) == sent[subject]["seq"]
        by_subject.setdefault(subject, []).append(int(count))
    assert by_subject == {"ok1": [1], "ok2": [1], "fail": [1], "retry": [1, 2]}
    stdin_events = [orjson.loads(line) for line in (tmp_path / "log.json").read_text()
                    .splitlines()]
    assert stdin_events[0] == sent[stdin_events[0]["subject"]]["event"]

    handled = await events_of_type(http, broker.url, "test.handled")
    mine = {e["causationid"]: e for e in handled if e["source"] == f"consume/{name}"}
    for subject in ("ok1", "ok2", "retry"):
        result = mine[sent[subject]["id"]]
        assert result["subject"] == subject and result["correlationid"] == "inc-42"
        assert result["specversion"] == "1.0" and result["time"] and result["id"]
    [dead] = await events_of_type(http, broker.url, "opsbus.delivery.deadlettered",
                                  subject=name)
    assert dead["data"]["event"]["id"] == sent["fail"]["id"]
    status = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/status")
    assert status["counts"] == {"pending": 0, "leased": 0, "delivered": 3, "deadlettered": 1}


async def test_consume_runs_commands_concurrently(broker, http, tmp_path):
    name, etype = await pull_sub(http, broker.url)
    for n in range(6):
        await publish(http, broker.url, type=etype, subject=f"ok{n}")
    gate = tmp_path / "go"
    proc = await start_consume(broker.url, tmp_path, name, "--max", "6", "--concurrency",
                               "3", "--json", gate=gate)

    async def started() -> list[str]:
        log = tmp_path / "log"
        return log.read_text().splitlines() if log.exists() else []

    # Three commands running at once, none able to finish; no fourth while they hold.
    await eventually(lambda: running(started, 3))
    assert len(await started()) == 3
    gate.touch()
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert orjson.loads(stdout)["acked"] == 6


async def running(started, count: int) -> bool:
    return len(await started()) >= count


async def test_sigterm_lets_the_running_command_finish(broker, http, tmp_path):
    name, etype = await pull_sub(http, broker.url)
    first = await publish(http, broker.url, type=etype, subject="slow")
    await publish(http, broker.url, type=etype, subject="never")
    gate = tmp_path / "go"
    proc = await start_consume(broker.url, tmp_path, name, "--json", gate=gate)

    async def command_running() -> bool:
        return (tmp_path / "log").exists()

    await eventually(command_running)
    proc.send_signal(signal.SIGTERM)
    gate.touch()  # the command can finish only now, after the signal
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, stderr.decode()
    assert orjson.loads(stdout)["acked"] == 1
    deliveries = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries")
    states = {d["seq"]: d["state"] for d in deliveries["deliveries"]}
    assert states[first["seq"]] == "delivered"
    assert list(states.values()).count("pending") == 1  # the second was never taken
