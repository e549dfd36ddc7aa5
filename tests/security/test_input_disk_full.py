"""A store that cannot write (a full disk, played by a file size limit on the broker
process): publishers get 503 with `Retry-After`, `/readyz` says not ready, the log says it
in a line or two instead of a traceback per request, and all recovers once there is room."""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, make_event
from tests.security.problems import call

LIMIT = 6 * 1024 * 1024
"""Bytes any one file of the broker may grow to while the disk is "full"."""


def limited() -> None:
    """In the broker process: writes past LIMIT fail (EFBIG) instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_a_full_disk_is_503_with_retry_after_and_one_log_line(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "data", preexec=limited, args=[
        "--durability", "normal", "--wal-max-bytes", str(64 * 1024 * 1024)]).start()
    try:
        assert proc.proc is not None
        blob = "x" * 60_000

        def batch() -> bytes:
            return orjson.dumps([make_event(data={"blob": blob}) for _ in range(10)])

        status = 200
        for _ in range(40):  # 40 x 600 kB: far past the limit
            status, doc, headers = call(proc, "POST", "/v1/events", raw=batch(), headers=BATCH)
            if status != 200:
                break
        assert status == 503, doc
        assert headers["retry-after"].isdigit() and int(headers["retry-after"]) >= 1
        assert "could not commit" in doc["detail"]

        status, doc, headers = call(proc, "GET", "/readyz")
        assert status == 503 and "commit failed" in doc["detail"], doc
        assert int(headers["retry-after"]) >= 1

        for _ in range(30):  # every one fails the same way
            status, doc, headers = call(proc, "POST", "/v1/events", raw=batch(),
                                        headers=BATCH)
            assert status == 503 and "retry-after" in headers, doc
        log = proc.log()
        assert "Traceback" not in log, log
        assert 1 <= log.count("commit failed") <= 3, log

        # Room again: the next publish commits and readiness comes back at once.
        resource.prlimit(proc.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        status, doc, _ = call(proc, "POST", "/v1/events", raw=batch(), headers=BATCH)
        assert status == 200, doc
        status, doc, _ = call(proc, "GET", "/readyz")
        assert status == 200, doc
        assert "commits succeed again" in proc.log()
    finally:
        proc.stop()

