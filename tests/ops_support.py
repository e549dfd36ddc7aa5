"""Helpers for the operations tests: run the CLI, load stores, publish in bulk."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import orjson

from tests.broker_process import ROOT
from tests.conftest import BATCH, make_event

FIXTURES = Path(__file__).parent / "fixtures"


def opsbus(*args: str, cwd: Path | None = None, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`opsbus ARGS` from this tree, as a user runs it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd)


def load_sql(sql_path: Path, db_path: Path) -> Path:
    """A database file made from a SQL dump (a store written by an earlier release)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.executescript(sql_path.read_text())
    finally:
        conn.close()
    return db_path


def read_db(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


async def publish_batch(session: aiohttp.ClientSession, url: str, n: int, *,
                        source: str = "tests/ops", size: int = 200, **attrs: object
                        ) -> list[int]:
    """Publish n events in one batch (each with ~size bytes of data); their seqs."""
    events = [make_event(source=source, data={"pad": "x" * size}, **attrs) for _ in range(n)]
    async with session.post(url + "/v1/events", data=orjson.dumps(events),
                            headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [r["seq"] for r in await resp.json()]


class ServerProcess:
    """A broker started from any command line (the frozen binary, TLS flags), readiness
    checked over HTTP or HTTPS; stopped with SIGTERM like a service manager does."""

    def __init__(self, argv: list[str], *, url: str, data_dir: Path, cwd: Path,
                 env: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.argv = argv
        self.url = url
        self.data_dir = data_dir
        self.cwd = cwd
        self.env = env if env is not None else dict(os.environ)
        self.ssl_context = ssl_context
        self.log_path = cwd / f"{data_dir.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_after_s = 0.0

    @property
    def token(self) -> str | None:
        """The admin token the broker wrote to its data directory, if it writes one."""
        path = self.data_dir / "admin.token"
        return path.read_text().strip() if path.exists() else None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            started = time.monotonic()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.cwd)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1,
                                            context=self.ssl_context) as resp:
                    if resp.status == 200:
                        self.ready_after_s = time.monotonic() - started
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError(f"not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def terminate(self) -> None:
        """SIGTERM without waiting (the test watches the shutdown)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.terminate()
        return self.wait(timeout)


def refuses_connections(port: int) -> bool:
    """True once nothing listens on 127.0.0.1:port (a stopping server closed its socket)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def wait_until_refused(port: int, timeout: float = 10.0) -> None:
    """Block until the listening socket is gone: the barrier that says a SIGTERM was
    handled (aiohttp closes its sites first when it shuts down)."""
    deadline = time.monotonic() + timeout
    while not refuses_connections(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} still accepts connections")
        time.sleep(0.01)
