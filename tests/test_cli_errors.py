"""The command line with bad arguments, bad files, a bad URL, a broker that is down and a
broken opsbus.toml: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import ADMIN_TOKEN, AUTH, ROOT, BrokerProcess, free_port

DOWN = "http://127.0.0.1:1"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("cli-errors")
    (folder / "opsbus.toml").write_text('[[subscriptions]]\nname = "pull"\ntype = "pull"\n')
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def opsbus(*args: str, cwd: Path | None = None, timeout: float = 30
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["OPSBUS_TOKEN"] = ADMIN_TOKEN
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def get(broker: BrokerProcess, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(broker.url + path, headers=AUTH)
                                ) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str,
                          code: int | None = None) -> str:
    """Non-zero exit, no traceback, one `opsbus: ...` line (a server's INFO log aside)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("opsbus: "), result.stderr
    assert result.returncode != 0 if code is None else result.returncode == code
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- no broker needed: refused before any request -----------------------------------------

@pytest.mark.parametrize(("args", "words"), [
    (["emit", "--type", "t", "--url", "notaurl"], ("notaurl", "invalid")),
    (["emit", "--type", "t", "--url", "http://[::1"], ("invalid",)),
    (["emit", "--type", "t", "--url", "http://127.0.0.1:99999"], ("invalid",)),
    (["todo", "list", "--url", "ftp://x"], ("invalid",)),
    (["emit", "--type", "t", "--data", "{bad", "--url", DOWN], ("--data", "not valid JSON")),
    (["emit", "--type", "t", "--data", "[1,", "--url", DOWN], ("--content-type text/plain",)),
    (["emit", "--type", "t", "--content-type", "application/json", "--data", "x",
      "--url", DOWN], ("not valid JSON",)),
    (["emit", "--type", "t", "--data", "@/nonexistent/file", "--url", DOWN],
     ("/nonexistent/file",)),
    (["todo", "reemit", "1", "--data", "{bad", "--url", DOWN], ("not valid JSON",)),
    (["consume", "pull", "--url", DOWN], ("after --",)),
    (["tail", "-n", "0", "--url", DOWN], ("--count",)),
    (["tail", "--after", "-1", "--url", DOWN], ("--after",)),
    (["todo", "claim", "abc"], ("whole number",)),
    (["todo", "claim", "²"], ("whole number",)),
    (["export", "--limit", "9" * 5000, "--url", DOWN], ("--limit", "at most")),
    (["replay", "/nonexistent/folder", "--url", DOWN], ("/nonexistent/folder",)),
])
def test_refused_before_any_request(args: list[str], words: tuple[str, ...]) -> None:
    assert_one_line_error(opsbus(*args), *words)


@pytest.mark.parametrize("args", [
    ["emit", "--type", "t", "--url", DOWN], ["todo", "list", "--url", DOWN],
    ["routes", "list", "--url", DOWN], ["tail", "--url", DOWN], ["export", "--url", DOWN],
    ["silence", "list", "--url", DOWN], ["consume", "--url", DOWN, "pull", "--", "true"],
])
def test_broker_down(args: list[str]) -> None:
    """Exit 3 with one line, including `tail`, which reconnects only once it streamed."""
    assert_one_line_error(opsbus(*args), f"cannot reach the broker at {DOWN}", code=3)


def test_emit_binary_file_keeps_its_bytes(tmp_path: Path, broker: BrokerProcess) -> None:
    """Data that is not UTF-8 goes as data_base64, not as text with the bytes replaced."""
    blob = bytes(range(256))
    (tmp_path / "blob.bin").write_bytes(blob)
    result = opsbus("emit", "--type", "t", "--data", f"@{tmp_path / 'blob.bin'}", "--json",
                    "--url", broker.url)
    assert result.returncode == 0, result.stderr
    event = get(broker, f"/v1/events/{json.loads(result.stdout)['seq']}")["event"]
    assert base64.b64decode(event["data_base64"]) == blob
    assert event["datacontenttype"] == "application/octet-stream"


# -- with a broker: refused by the API, shown as its detail ---------------------------------

@pytest.mark.parametrize(("args", "words"), [
    (["todo", "claim", "99999999999999999999999"], ("at most",)),
    (["todo", "show", "999999"], ("no todo item 999999",)),
    (["silence", "add", "--key", "", "--duration", "1h"], ("matcher.key",)),
    (["silence", "add", "--key", "x", "--duration", "99999999999999d"], ("too long",)),
    (["silence", "expire", "999999"], ("no silence",)),
    (["tail", "--filter", "("], ("filter",)),
    (["export", "--since", "99999999999999d"], ("too long",)),
    (["subs", "deliveries", "nope"], ("nope",)),
    (["consume", "nope", "--", "true"], ("nope",)),
])
def test_refused_by_the_broker(broker: BrokerProcess, args: list[str],
                               words: tuple[str, ...]) -> None:
    # After `--`, --url would belong to consume's CMD: it goes before the subscription.
    at = args.index("--") - 1 if "--" in args else len(args)
    assert_one_line_error(opsbus(*args[:at], "--url", broker.url, *args[at:]), *words)


def test_bad_files(tmp_path: Path, broker: BrokerProcess) -> None:
    files = {
        "broken.toml": b"[[routes]\nname = ",
        "broken.json": b'{"routes": [',
        "not-utf8.toml": b"\xff\xfe[[routes]]\n",
        "bad-filter.toml": b'[[routes]]\nname = "r"\nfilter = { sql = "(" }\n'
                           b'targets = ["queue:q"]\n',
        "bad-url.toml": b'[[actions]]\nname = "a"\nurl = "http://[x/"\n',
    }
    for name, text in files.items():
        (tmp_path / name).write_bytes(text)
    for verb, name in [("routes", "broken.toml"), ("routes", "broken.json"),
                       ("routes", "not-utf8.toml"), ("routes", "bad-filter.toml"),
                       ("actions", "bad-url.toml"), ("subs", "broken.toml"),
                       ("routes", "missing.toml")]:
        assert_one_line_error(opsbus(verb, "apply", str(tmp_path / name), "--url", broker.url),
                              name)
    # Nothing was applied by any of them.
    assert get(broker, "/v1/routes")["routes"] == []
    assert get(broker, "/v1/actions")["actions"] == []


def test_export_to_a_missing_folder(tmp_path: Path, broker: BrokerProcess) -> None:
    target = tmp_path / "missing" / "out.ndjson"
    assert_one_line_error(opsbus("export", "--output", str(target), "--url", broker.url),
                          "missing")


# -- serve: bad settings, bad files, a taken port ----------------------------------------------

def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return opsbus("serve", "--data-dir", str(tmp_path / "data"), *args, cwd=tmp_path,
                  timeout=60)


def test_serve_on_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert_one_line_error(serve(tmp_path, "--listen", f"127.0.0.1:{port}"),
                              "address already in use")


def test_serve_with_an_unusable_data_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert_one_line_error(opsbus("serve", "--data-dir", str(tmp_path / "file" / "data"),
                                 "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path),
                          "file")


@pytest.mark.parametrize(("args", "words"), [
    (["--log-level", "loud"], ("--log-level", "log_level")),
    (["--heartbeat-s", "nan"], ("--heartbeat-s", "heartbeat_s")),
    (["--todo-sweep-s", "-1"], ("todo_sweep_s",)),
])
def test_serve_bad_flags(tmp_path: Path, args: list[str], words: tuple[str, ...]) -> None:
    assert_one_line_error(serve(tmp_path, *args), *words)


QUEUE = '[[queues]]\nname = "q"\n'
ROUTE = '[[routes]]\nname = "r"\nfilter = {{ {} }}\ntargets = ["queue:q"]\n'
BAD_CONFIGS = {
    "unknown-section": ('[bogus]\na = 1\n', ("unknown section [bogus]",)),
    "unknown-setting": ('[server]\nbogus = 1\n', ("server.bogus",)),
    "setting-type": ('[server]\nmax_request_bytes = "big"\n', ("max_request_bytes",)),
    "setting-fraction": ('[server]\nmax_batch_events = 1.5\n', ("max_batch_events",)),
    "setting-negative": ('[server]\nmax_batch_events = -5\n', ("max_batch_events",)),
    "setting-nan": ('[server]\nheartbeat_s = nan\n', ("heartbeat_s",)),
    "listen": ('[server]\nlisten = "nope"\n', ("listen",)),
    "log-level": ('[server]\nlog_level = "loud"\n', ("log_level",)),
    "not-utf8": (b"\xff\xfe[server]\n", ("UTF-8",)),
    "toml-syntax": ('[[routes]\nname = ', ("line 1",)),
    "duplicate-route": (QUEUE + ROUTE.format('sql = "TRUE"') * 2, ("duplicate name 'r'",)),
    "duplicate-queue": (QUEUE * 2, ("duplicate name 'q'",)),
    "bad-sql": (QUEUE + ROUTE.format('sql = "type ="'), ("routes[0]", "filter.sql")),
    "bad-dialect": (QUEUE + ROUTE.format('regex = "x"'), ("routes[0]", "regex")),
    "bad-lease": ('[[queues]]\nname = "q"\nlease = "forever"\n', ("queues[0]", "lease")),
    "huge-lease": ('[[queues]]\nname = "q"\nlease = "9999999999d"\n', ("lease", "too long")),
    "bad-url": ('[[subscriptions]]\nname = "s"\ntype = "push"\nurl = "http://[x"\n',
                ("subscriptions[0]", "url")),
    "bad-action-url": ('[[actions]]\nname = "a"\nurl = "http://h:99999/"\n',
                       ("actions[0]", "url")),
    "routes-not-array": ('[routes]\nname = "r"\n', ("[[routes]]",)),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_serve_with_a_broken_config(tmp_path: Path, case: str) -> None:
    """Exits (promptly: a refused file must not leave the store's threads running) with
    one line naming the file and what is wrong in it."""
    text, words = BAD_CONFIGS[case]
    path = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    result = serve(tmp_path, "--config", str(path))
    line = assert_one_line_error(result, *words, code=1)
    assert "bad.toml" in line
