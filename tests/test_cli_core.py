"""`opsbus emit` and `opsbus tail` as a user runs them, against a real broker."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from tests.broker_process import ROOT, BrokerProcess


def opsbus(*args: str, stdin: str | None = None, timeout: float = 30
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "broker", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env)


def lines_of(pipe: IO[str] | None) -> queue.Queue[str]:
    """The lines a child process prints, as they come (read by a thread), so a test can
    wait for the next one with a timeout."""
    assert pipe is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        try:
            for line in pipe:
                lines.put(line)
        except (ValueError, OSError):
            pass  # closed by the test once it is done with the process

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_emit_prints_the_seq_and_reads_data_from_stdin_and_files(broker: BrokerProcess,
                                                                  tmp_path: Path):
    first = opsbus("emit", "--url", broker.url, "--type", "deploy.finished",
                   "--source", "ci/main", "--subject", "orders", "--id", "d-1",
                   "--data", '{"version": "4.12.0"}', "--ext", "correlationid=inc-7")
    assert first.returncode == 0, first.stderr
    seq = int(first.stdout.strip())
    again = opsbus("emit", "--url", broker.url, "--type", "deploy.finished",
                   "--source", "ci/main", "--subject", "orders", "--id", "d-1",
                   "--data", '{"version": "4.12.0"}', "--ext", "correlationid=inc-7",
                   "--time", json.loads(opsbus("tail", "--url", broker.url, "--after", "0",
                                               "-n", "1", "--json").stdout)["event"]["time"])
    assert again.returncode == 0 and again.stdout.startswith(f"{seq} (duplicate")
    piped = opsbus("emit", "--url", broker.url, "--type", "note", "--data", "-", "--json",
                   stdin='{"from": "stdin"}')
    assert json.loads(piped.stdout)["duplicate"] is False
    path = tmp_path / "payload.json"
    path.write_text('{"from": "file"}')
    from_file = opsbus("emit", "--url", broker.url, "--type", "note", "--data", f"@{path}")
    assert from_file.returncode == 0
    lines = opsbus("tail", "--url", broker.url, "--after", "0", "-n", "3", "--json")
    events = [json.loads(line)["event"] for line in lines.stdout.splitlines()]
    assert events[0]["correlationid"] == "inc-7"
    assert [e["data"] for e in events[1:]] == [{"from": "stdin"}, {"from": "file"}]


def test_emit_errors_are_one_line_with_a_non_zero_exit(broker: BrokerProcess):
    bad = opsbus("emit", "--url", broker.url, "--type", "x", "--ext", "Bad-Name=1")
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "Bad-Name" in bad.stderr
    assert "Traceback" not in bad.stderr
    down = opsbus("emit", "--url", "http://127.0.0.1:9", "--type", "x")
    assert down.returncode == 3 and "cannot reach the broker" in down.stderr
    missing = opsbus("emit", "--url", broker.url)
    assert missing.returncode == 2 and "--type" in missing.stderr


def test_tail_follows_filters_and_resumes_across_a_restart(tmp_path: Path):
    proc = BrokerProcess(tmp_path / "data").start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tail = subprocess.Popen(
        [sys.executable, "-m", "broker", "tail", "--url", proc.url, "--after", "0",
         "--filter", "type LIKE 'keep.%'", "--json", "-n", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = lines_of(tail.stdout)
    try:
        for kind in ("keep.a", "drop.b", "keep.c"):
            assert opsbus("emit", "--url", proc.url, "--type", kind).returncode == 0
        # Both kept events printed: the restart interrupts a stream that was reading.
        got = [json.loads(lines.get(timeout=30)) for _ in range(2)]
        proc.restart()
        for kind in ("drop.d", "keep.e", "keep.f"):
            assert opsbus("emit", "--url", proc.url, "--type", kind).returncode == 0
        got += [json.loads(lines.get(timeout=30)) for _ in range(2)]
        assert tail.wait(timeout=30) == 0
        err = tail.stderr.read() if tail.stderr else ""
    finally:
        tail.kill()
        tail.wait()
        for pipe in (tail.stdout, tail.stderr):
            if pipe:
                pipe.close()
        proc.stop()
    assert [g["event"]["type"] for g in got] == ["keep.a", "keep.c", "keep.e", "keep.f"]
    assert [g["seq"] for g in got] == sorted(g["seq"] for g in got)
    assert "reconnecting" in err


def test_tail_with_a_bad_filter_names_the_position(broker: BrokerProcess):
    result = opsbus("tail", "--url", broker.url, "--filter", "type = = 'x'")
    assert result.returncode == 1
    assert "column" in result.stderr and "Traceback" not in result.stderr


def test_tail_prints_a_readable_line_per_event(broker: BrokerProcess):
    opsbus("emit", "--url", broker.url, "--type", "backup.job.failed", "--source",
           "backup/restic", "--subject", "media-bucket",
           "--data", '{"reason": "repository locked"}')
    result = opsbus("tail", "--url", broker.url, "--after", "0", "-n", "1")
    line = result.stdout.strip()
    assert "backup.job.failed" in line and "media-bucket" in line
    assert "repository locked" in line
