"""The one-file executable (`make dist`), run with no Python around it: from an empty
working directory on a fresh data directory, every command, plugins, console and `up`."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from broker.cli import build_parser
from tests.broker_process import free_port
from tests.conftest import STRUCTURED, make_event
from tests.ops_support import ServerProcess

BINARY = os.environ.get("OPSBUS_BINARY")
pytestmark = [pytest.mark.dist,
              pytest.mark.skipif(not BINARY, reason="needs OPSBUS_BINARY (make dist-test)")]

PLUGIN = '''
__version__ = "{version}"


def register(registry):
    def receive(request):
        return [{{"specversion": "1.0", "id": request.json()["id"], "source": "tests/frozen",
                 "type": "frozen.{version}"}}]
    registry.source("frozen", receive)
'''


def bare_env(home: Path) -> dict[str, str]:
    """What a fresh host gives a service: no virtualenv, no PYTHON* variables."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def run(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    assert BINARY is not None
    return subprocess.run([BINARY, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def served(workdir: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    assert BINARY is not None
    port = free_port()
    server = ServerProcess([BINARY, "serve", "--listen", f"127.0.0.1:{port}"],
                           url=f"http://127.0.0.1:{port}", data_dir=workdir / ".opsbus",
                           cwd=workdir, env=bare_env(tmp_path / "home")).start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


def token_args(server: ServerProcess) -> list[str]:
    return ["--token", server.token] if server.token else []


async def test_the_binary_serves_publishes_streams_and_stops_cleanly(
    served: ServerProcess, workdir: Path, tmp_path: Path
):
    env, auth = bare_env(tmp_path / "home"), token_args(served)
    assert BINARY is not None
    size = Path(BINARY).stat().st_size
    print(f"\nbinary: {size / 2**20:.1f} MiB; serve ready after {served.ready_after_s:.2f} s")
    sent = run("emit", "--url", served.url, "--type", "binary.check", "--source",
               "tests/binary", "--data", '{"n": 1}', *auth, cwd=workdir, env=env)
    assert sent.returncode == 0, sent.stderr
    seq = int(sent.stdout.split()[0])
    back = run("tail", "--url", served.url, "--after", str(seq - 1), "-n", "1", "--json",
               *auth, cwd=workdir, env=env)
    assert back.returncode == 0, back.stderr
    assert orjson.loads(back.stdout)["event"]["data"] == {"n": 1}
    async with aiohttp.ClientSession(headers=served.headers) as http:
        async with http.get(served.url + "/v1/stream", params={"after": str(seq)}) as stream:
            live = make_event(type="binary.live")
            async with http.post(served.url + "/v1/events", data=orjson.dumps(live),
                                 headers=STRUCTURED) as resp:
                live_seq = (await resp.json())["seq"]
            while (line := await stream.content.readline()) != f"id: {live_seq}\n".encode():
                assert line, "the stream ended before the live event"
    backup = run("backup", str(tmp_path / "b.db"), "--url", served.url, *auth,
                 cwd=workdir, env=env)
    assert backup.returncode == 0, backup.stderr
    check = run("store", "check", "--file", str(tmp_path / "b.db"), cwd=workdir, env=env)
    assert check.returncode == 0 and ": ok (" in check.stdout, check.stdout + check.stderr
    assert served.stop() == 0
    assert "Traceback" not in served.log()
    assert (workdir / ".opsbus" / "opsbus.db").exists()


def test_every_command_of_the_binary_answers(workdir: Path, tmp_path: Path):
    env = bare_env(tmp_path / "home")
    parser = build_parser()
    commands = next(a.choices for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction))
    timings = []
    for name in commands:
        started = time.monotonic()
        result = run(name, "--help", cwd=workdir, env=env)
        timings.append(time.monotonic() - started)
        assert result.returncode == 0 and "usage: opsbus" in result.stdout, (name, result)
    print(f"\n{len(timings)} commands; --help takes {min(timings):.2f}-{max(timings):.2f} s")
    assert not any(workdir.iterdir()), "a command left files in the working directory"


async def test_user_plugins_load_and_reload_in_the_binary(workdir: Path, tmp_path: Path):
    assert BINARY is not None
    folder = workdir / "my_plugins"
    folder.mkdir()
    (folder / "frozen.py").write_text(PLUGIN.format(version="v1"))
    (workdir / "opsbus.toml").write_text('[plugins]\npaths = ["./my_plugins"]\n')
    port = free_port()
    server = ServerProcess([BINARY, "serve", "--listen", f"127.0.0.1:{port}"],
                           url=f"http://127.0.0.1:{port}", data_dir=workdir / ".opsbus",
                           cwd=workdir, env=bare_env(tmp_path / "home")).start(timeout=120)
    try:
        async with aiohttp.ClientSession(headers=server.headers) as http:
            async def plugins() -> dict[str, dict[str, object]]:
                async with http.get(server.url + "/v1/plugins") as resp:
                    return {p["name"]: p for p in (await resp.json())["plugins"]}

            found = await plugins()
            assert {"alertmanager", "github", "webhook", "shell"} <= set(found)
            assert found["frozen"]["version"] == "v1" and found["frozen"]["origin"] == "folder"
            async with http.post(server.url + "/v1/sources/frozen",
                                 json={"id": "f-1"}) as resp:
                assert resp.status == 200, await resp.text()
            (folder / "frozen.py").write_text(PLUGIN.format(version="v2"))
            deadline = time.monotonic() + 30
            while (await plugins())["frozen"]["version"] != "v2":
                assert time.monotonic() < deadline, "the changed plugin was not reloaded"
                await asyncio.sleep(0.1)
            async with http.get(server.url + "/v1/events", params={
                    "source": "opsbus/plugins", "after": "0"}) as resp:
                kinds = [e["event"]["type"] for e in (await resp.json())["events"]]
            assert "opsbus.plugin.loaded" in kinds
    finally:
        assert server.stop() == 0


async def test_up_serves_the_sample_day_headless(workdir: Path, tmp_path: Path):
    assert BINARY is not None
    port = free_port()
    server = ServerProcess([BINARY, "up", "--listen", f"127.0.0.1:{port}"],
                           url=f"http://127.0.0.1:{port}", data_dir=workdir / ".opsbus",
                           cwd=workdir, env=bare_env(tmp_path / "home")).start(timeout=120)
    try:
        deadline = time.monotonic() + 30
        while "sample events" not in server.log():  # published once it is ready
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession(headers=server.headers) as http:
            async with http.get(server.url + "/v1/queues") as resp:
                queues = {q["name"]: q for q in (await resp.json())["queues"]}
        assert {"alerts", "deploys"} <= set(queues)
        assert sum(q["open"] for q in queues.values()) > 0
    finally:
        assert server.stop() == 0


def test_the_console_runs_in_a_terminal(served: ServerProcess, workdir: Path, tmp_path: Path):
    env = {**bare_env(tmp_path / "home"), "TERM": "xterm-256color"}
    sent = run("emit", "--url", served.url, "--type", "console.visible", *token_args(served),
               cwd=workdir, env=env)
    assert sent.returncode == 0, sent.stderr
    assert BINARY is not None
    pid, fd = pty.fork()
    if pid == 0:  # the child: the console on the pseudo-terminal
        os.chdir(workdir)
        os.execve(BINARY, [BINARY, "console", "--url", served.url, "--operator", "ci",
                           "--screen", "stream", *token_args(served)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while b"console.visible" not in screen:
            assert time.monotonic() < deadline, screen[-2000:]
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
        assert b"console.visible" in screen
        os.write(fd, b"\x11")  # ctrl+q
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "the console did not quit on ctrl+q"
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
