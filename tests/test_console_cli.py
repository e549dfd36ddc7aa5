"""`opsbus up` without a terminal serves headless with the sample day loaded once;
console contexts resolve from the XDG config file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from broker.errors import BadRequest
from broker.eventfiles import read_events
from console.contexts import resolve_context
from console.format import emit_command
from tests.broker_process import ADMIN_TOKEN, ROOT, free_port
from tests.console_support import http

SAMPLE_KEYS = {(e.event["source"], e.event["id"])
               for e in read_events([ROOT / "sample_events"]) if e.event}


def start_up(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
    return subprocess.Popen(
        [sys.executable, "-m", "broker", "up", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "data"), "--durability", "off"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT), "OPSBUS_TOKEN": ADMIN_TOKEN},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_samples(url: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            page = http(f"{url}/v1/events?limit=1000")
            samples = [e for e in page["events"]
                       if (e["event"]["source"], e["event"]["id"]) in SAMPLE_KEYS]
            if len(samples) >= len(SAMPLE_KEYS):
                return len(samples)
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("the sample events were not loaded")


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    return err.decode()


def test_up_serves_headless_and_loads_samples_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_up(tmp_path, port)
    try:
        assert wait_for_samples(url) == len(SAMPLE_KEYS)
        assert http(f"{url}/v1/queues")["queues"]  # the sample config was used
    finally:
        err = stop(proc)
    assert "no terminal" in err and f"loaded {len(SAMPLE_KEYS)} sample events" in err
    proc = start_up(tmp_path, port)  # same store: nothing is loaded again
    try:
        assert wait_for_samples(url) == len(SAMPLE_KEYS)
    finally:
        err = stop(proc)
    assert "sample events" not in err


def test_contexts_from_xdg_config(tmp_path: Path) -> None:
    folder = tmp_path / "opsbus"
    folder.mkdir()
    (folder / "console.toml").write_text(
        'default = "prod"\n[contexts.prod]\nurl = "https://prod.example"\n'
        'token = "t"\noperator = "ana"\n[contexts.lab]\nurl = "http://lab:8787"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    prod = resolve_context(None, url=None, token=None, operator=None, environ=env)
    assert (prod.name, prod.url, prod.token, prod.operator) == (
        "prod", "https://prod.example", "t", "ana")
    lab = resolve_context("lab", url=None, token=None, operator="bo", environ=env)
    assert (lab.url, lab.operator) == ("http://lab:8787", "bo")
    flags = resolve_context("lab", url="http://x:1", token=None, operator=None, environ=env)
    assert flags.url == "http://x:1"
    with pytest.raises(BadRequest, match="unknown context"):
        resolve_context("nope", url=None, token=None, operator=None, environ=env)


def test_emit_command_round_trips_attributes() -> None:
    line = emit_command({"specversion": "1.0", "id": "a 1", "source": "s", "type": "t",
                         "subject": "x", "data": {"k": "it's"}, "correlationid": "c"})
    assert line.startswith("opsbus emit --id 'a 1' --type t --source s --subject x --data ")
    assert "--ext correlationid=c" in line
