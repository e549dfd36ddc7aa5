"""Shared bench helpers: machine info, a broker process, wrk runs, a Python load client."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.broker_process import ADMIN_TOKEN, BrokerProcess, free_port  # noqa: E402 - re-exported

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
"""Every bench broker runs authenticated, as shipped; every load generator sends this."""


def counter(url: str, name: str = "opsbus_commits_total") -> int | None:
    """A counter of the broker's metrics, its commits by default (None when it has no
    metrics: the reference servers)."""
    value = metric(url, name)
    return None if value is None else int(value)


def metric(url: str, name: str) -> float | None:
    """One unlabelled sample of the broker's metrics (None when it has none)."""
    import urllib.request

    request = urllib.request.Request(url + "/metrics", headers=AUTH)
    try:
        text = urllib.request.urlopen(request, timeout=60).read().decode()
    except OSError:
        return None
    found = re.search(rf"^{name} (\S+)", text, re.M)
    return float(found.group(1)) if found else None


WRK = shutil.which("wrk")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}){mem}, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def load_average() -> str:
    """The 1/5/15-minute load averages: on a shared machine, how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds a process has run so far (Linux schedstat): its main thread (the event
    loop) and all its other threads together."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that has just ended
            continue
        if task.name == str(pid):
            main += ns / 1e9
        else:
            others += ns / 1e9
    return main, others


BENCH_DIR = Path(os.environ.get("OPSBUS_BENCH_DIR", "/tmp/opsbus-bench"))
"""Where pre-filled stores live (large: about 0.6 GiB per million events)."""


def start_broker(args: list[str] | None = None, config: Path | None = None,
                 prefill: int = 0, items: int | None = None) -> BrokerProcess:
    """An `opsbus serve` process on a fresh data directory, or on the shared pre-filled
    one holding `prefill` events (created on first use, reused after: each run adds
    its own events, which is what a live bus does too)."""
    if prefill:
        data = BENCH_DIR / f"store-{prefill}"
        subprocess.run([sys.executable, str(ROOT / "bench" / "prefill.py"), str(data),
                        "--events", str(prefill)]
                       + (["--items", str(items)] if items is not None else []), check=True)
    else:
        data = Path(tempfile.mkdtemp(prefix="opsbus-bench-")) / "data"
        data.mkdir(parents=True)
    return BrokerProcess(data, args=args or [], config=config).start(timeout=300)


def discard(broker: BrokerProcess) -> None:
    """Stop a broker started on a fresh store and delete the store (pre-filled ones stay
    for later runs)."""
    broker.stop()
    if not broker.data_dir.is_relative_to(BENCH_DIR):
        shutil.rmtree(broker.data_dir.parent, ignore_errors=True)


def wait_ready(url: str, path: str = "/readyz", timeout: float = 10.0) -> None:
    """Poll a freshly started helper server until it answers."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + path, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


@contextlib.contextmanager
def helper_server(argv: Callable[[int], list[str]]) -> Iterator[tuple[int, str]]:
    """(pid, url) of a helper server run as `python *argv(port)` on a free port, once it
    answers; stopped on leaving."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, *argv(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        yield proc.pid, url
    finally:
        proc.terminate()
        proc.wait()


def wrk(url: str, script: str, *, connections: int = 32, seconds: int = 10,
        threads: int = 1) -> tuple[float, int]:
    """(requests/s, non-2xx count) from one wrk run with a Lua script."""
    assert WRK, "wrk is not installed"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    out = subprocess.run(
        # A long timeout: on a loaded machine a batched request can take seconds, and
        # wrk's default (2 s) would count those as not done at all.
        [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
         "-s", fh.name, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(fh.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    found = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    bad = int(found.group(1)) if found else 0
    if bad * 100 > total:
        raise RuntimeError(f"wrk: {bad} of {total} requests were refused or failed:\n{out}")
    # Only answered-2xx requests count: a refusal is cheap and must not look like speed.
    return rps * (total - bad) / max(total, 1), bad


def parse_count(text: str) -> int:
    """'10M', '1.5k', '250000' -> an integer."""
    text = text.strip().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


PAYLOAD = "x" * 300

LUA_PROLOGUE = r"""
local counter = 0
local tid = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  tid = wrk.thread:get("tid")
  math.randomseed(os.time() * 1000 + tid * 7919 + math.floor(os.clock() * 1e6))
end
-- A random version-4 UUID, as real publishers send (not a sequence: sequential ids
-- land on one index page and hide what random keys cost a store).
local function uuid4()
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
    math.random(0, 0xffff), math.random(0, 0xffff), math.random(0, 0xffff),
    math.random(0, 0xfff), math.random(0x8000, 0xbfff), math.random(0, 0xffff),
    math.random(0, 0xffff), math.random(0, 0xffff))
end
"""
"""Random UUID event ids; a subject among 50."""

SINGLE_LUA = LUA_PROLOGUE + r"""
request = function()
  counter = counter + 1
  local body = string.format('{"specversion":"1.0","id":"%s","source":"bench/wrk",'
    .. '"type":"bench.event","subject":"s%d","time":"2026-11-25T10:00:00Z",'
    .. '"datacontenttype":"application/json","data":{"n":%d,"severity":"warning",'
    .. '"payload":"PAYLOAD"}}', uuid4(), counter % 50, counter)
  return wrk.format("POST", "/v1/events",
    {["Content-Type"] = "application/cloudevents+json", ["Authorization"] = "AUTH"}, body)
end
""".replace("PAYLOAD", PAYLOAD).replace("AUTH", AUTH["Authorization"])

BATCH_LUA = LUA_PROLOGUE + r"""
request = function()
  local parts = {}
  for i = 1, 100 do
    counter = counter + 1
    parts[i] = string.format('{"specversion":"1.0","id":"%s","source":"bench/wrk",'
      .. '"type":"bench.event","subject":"s%d","time":"2026-11-25T10:00:00Z",'
      .. '"datacontenttype":"application/json","data":{"n":%d,"severity":"warning",'
      .. '"payload":"PAYLOAD"}}', uuid4(), counter % 50, counter)
  end
  return wrk.format("POST", "/v1/events",
    {["Content-Type"] = "application/cloudevents-batch+json", ["Authorization"] = "AUTH"},
    "[" .. table.concat(parts, ",") .. "]")
end
""".replace("PAYLOAD", PAYLOAD).replace("AUTH", AUTH["Authorization"])
