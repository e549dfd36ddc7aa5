"""Run a real `opsbus serve` process on a free port against a real data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

ADMIN_TOKEN = "opsbus_tests-admin-token"
"""Every test broker runs authenticated (as shipped) and also accepts this admin token
(`--token`), which the suite's HTTP sessions and CLI runs send (tests/conftest.py)."""
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokerProcess:
    """`opsbus serve` as a child process; restartable on the same data directory.

    With `test_clock=True` the broker runs on a manual clock (`--test-clock`): its time
    stands still until `await proc.advance(http, seconds)` moves it, firing the timers
    that fall due (sweeps, retries, lease expiries, heartbeats) and answering once the
    work they woke is back waiting on the clock. Use it instead of sleeping: a lease
    that must lapse lapses because the test advanced time past it, and "nothing
    happened yet" is exact because the clock has not reached the moment."""

    def __init__(self, data_dir: Path, *, config: Path | None = None,
                 env: dict[str, str] | None = None, args: list[str] | None = None,
                 test_clock: bool = False, preexec: Callable[[], None] | None = None) -> None:
        self.data_dir = data_dir
        self.config = config
        self.extra_env = env or {}
        self.args = [*(args or []), *(["--test-clock"] if test_clock else [])]
        self.port = free_port()
        self.preexec = preexec
        """Run in the child before the broker starts (resource limits for fault tests)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-broker.log"

    @property
    def token(self) -> str | None:
        """The admin token requests to this broker carry (None with --no-auth)."""
        if "--no-auth" in self.args:
            return None
        if "--token" in self.args:
            return self.args[self.args.index("--token") + 1]
        return ADMIN_TOKEN

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> BrokerProcess:
        # A deadline, not a wait: a broker is polled until ready, and a loaded 2-core
        # machine can take more than 20 s to start Python with the broker's imports.
        if os.environ.get("OPSBUS_TEST_STORE") == "postgresql" and "--store" not in self.args:
            # The behaviour suites run again on PostgreSQL: one schema per broker, kept
            # across its restarts.
            from tests.pg_support import schema_for_process

            self.args = [*self.args, "--store", schema_for_process()]
        cmd = [sys.executable, "-m", "broker", "serve", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", str(self.data_dir), *self.args]
        if "--no-auth" not in self.args and "--token" not in self.args:
            cmd += ["--token", ADMIN_TOKEN]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.extra_env}
        env = {k: v for k, v in env.items() if not k.startswith("OPSBUS_") or k in self.extra_env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.data_dir.parent, preexec_fn=self.preexec)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"broker did not become ready:\n{self.log()}")

    async def advance(self, http: Any, seconds: float) -> dict[str, Any]:
        """Move the broker's manual clock forward (`POST /v1/test/clock`); its state."""
        async with http.post(self.url + "/v1/test/clock", json={"advance": seconds}) as resp:
            assert resp.status == 200, await resp.text()
            state: dict[str, Any] = await resp.json()
            return state

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: a clean shutdown."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> BrokerProcess:
        self.stop()
        return self.start()
