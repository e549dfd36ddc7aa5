"""Numbers from clients are ASCII digits within a range: Unicode digits ("²", "٣"), signs,
blanks and thousands of digits are 4xx problems naming the field, never a 500, and a
poison event in a batch names its entry and stores nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.numbers import NumberError, whole_number
from broker.outbound import RETRY_AFTER_CAP, retry_after_seconds
from tests.broker_process import ADMIN_TOKEN, ROOT, BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event
from tests.security.problems import assert_problem, call

CONFIG = """
[[queues]]
name = "q"
group_key = "{subject}"

[[routes]]
name = "to-q"
filter = { exact = { type = "numbers.todo" } }
targets = ["queue:q"]

[[subscriptions]]
name = "pull"
type = "pull"

[[routes]]
name = "to-pull"
filter = { exact = { type = "numbers.pull" } }
targets = ["subscription:pull"]
"""

NINES = "9" * 5000
"""Past Python's 4,300-digit limit for int()."""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("numbers")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def stored_with(broker: BrokerProcess, source: str) -> list[dict[str, Any]]:
    status, doc, _ = call(broker, "GET", f"/v1/events?source={source}&limit=100")
    assert status == 200, doc
    return list(doc["events"])


# -- the helper itself ----------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "²", "٣", "-1", "+1", " 1", "1 ", "1_000", "1.0", "0x1",
                                  NINES, "9223372036854775808"])
def test_whole_number_refuses_everything_but_ascii_digits_in_range(text: str) -> None:
    with pytest.raises(NumberError):
        whole_number(text)


def test_whole_number_reads_ascii_digits() -> None:
    assert whole_number("0") == 0
    assert whole_number("0" * 5000 + "42") == 42  # leading zeros do not count as size
    assert whole_number("9223372036854775807") == 2**63 - 1
    with pytest.raises(NumberError, match="at least 1"):
        whole_number("0", minimum=1)


# -- hopcount in events -----------------------------------------------------------------------

@pytest.mark.parametrize("hopcount", ["²", "٣", NINES, "-1", " 3", -1, 2**31, 1.5, True, "x"])
def test_a_bad_hopcount_is_refused_naming_the_attribute(broker: BrokerProcess,
                                                        hopcount: Any) -> None:
    source = "tests/numbers/hop-structured"
    status, doc, _ = call(broker, "POST", "/v1/events",
                          make_event(source=source, hopcount=hopcount), headers=STRUCTURED)
    assert_problem(status, doc, 400, "hopcount", attribute="hopcount")
    assert stored_with(broker, source) == []


def test_a_batch_holding_a_poison_hopcount_names_the_entry_and_stores_nothing(
        broker: BrokerProcess) -> None:
    source = "tests/numbers/hop-batch"
    batch = [make_event(source=source), make_event(source=source, hopcount=2),
             make_event(source=source, hopcount="²")]
    status, doc, _ = call(broker, "POST", "/v1/events", batch, headers=BATCH)
    assert_problem(status, doc, 400, "batch entry 2", "hopcount", attribute="hopcount",
                   index=2)
    assert stored_with(broker, source) == []
    # The publisher drops the bad entry and the rest goes in: a retry is not refused forever.
    status, doc, _ = call(broker, "POST", "/v1/events", batch[:2], headers=BATCH)
    assert status == 200, doc
    assert len(stored_with(broker, source)) == 2


@pytest.mark.parametrize("value", [NINES, "²", "-3", "2147483648"])
def test_a_bad_hopcount_header_is_refused(broker: BrokerProcess, value: str) -> None:
    source = "tests/numbers/hop-binary"
    headers = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": source,
               "ce-type": "numbers.binary", "ce-hopcount": value}
    status, doc, _ = call(broker, "POST", "/v1/events", raw=b"{}", headers=headers)
    assert_problem(status, doc, 400, "hopcount", attribute="hopcount")
    assert stored_with(broker, source) == []


def test_a_good_hopcount_header_is_kept(broker: BrokerProcess) -> None:
    source = "tests/numbers/hop-good"
    headers = {"ce-specversion": "1.0", "ce-id": "g1", "ce-source": source,
               "ce-type": "numbers.binary", "ce-hopcount": "007"}
    status, doc, _ = call(broker, "POST", "/v1/events", raw=b"{}", headers=headers)
    assert status == 201, doc
    assert stored_with(broker, source)[0]["event"]["hopcount"] == "007"


# -- ids in paths -------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/v1/events/{NINES}"),
    ("GET", f"/v1/todos/{NINES}"),
    ("POST", f"/v1/todos/{NINES}/claim"),
    ("GET", f"/v1/silences/{NINES}"),
    ("GET", f"/v1/subscriptions/pull/deliveries/{NINES}"),
])
def test_ids_of_thousands_of_digits_are_not_found(broker: BrokerProcess, method: str,
                                                  path: str) -> None:
    body = {"operator": "ann"} if method == "POST" else None
    status, doc, _ = call(broker, method, path, body)
    assert_problem(status, doc, 404, "at most 9223372036854775807")
    assert len(doc["detail"]) < 200  # the 5,000 digits are not echoed back


@pytest.mark.parametrize("path", ["/v1/events/%D9%A3", "/v1/todos/%D9%A3",
                                  "/v1/events/%C2%B2"])
def test_unicode_digits_in_a_path_are_no_id(broker: BrokerProcess, path: str) -> None:
    status, doc, _ = call(broker, "GET", path)
    assert status == 404, doc


# -- query parameters and cursors -----------------------------------------------------------

@pytest.mark.parametrize(("path", "name"), [
    ("/v1/todos?after=x%7C%C2%B2", "after"),
    ("/v1/todos?after=x%7C" + NINES, "after"),
    ("/v1/todos?after=nobar", "after"),
    ("/v1/events?after=%C2%B2", "after"),
    ("/v1/events?after=%D9%A3", "after"),
    ("/v1/events?after=-1", "after"),
    ("/v1/events?after=" + NINES, "after"),
    ("/v1/events?limit=%C2%B2", "limit"),
    ("/v1/events?limit=0", "limit"),
    ("/v1/events?limit=1001", "limit"),
    ("/v1/subscriptions/pull/deliveries?limit=%20%205", "limit"),
    ("/v1/actions/x/jobs?after=1_000", "after"),
    ("/v1/stream?after=%C2%B2", "after"),
    ("/v1/stream?after=" + NINES, "after"),
    ("/v1/silences?all=maybe", "all"),
    ("/v1/admin/store/check?quick=%C2%B2", "quick"),
])
def test_bad_numbers_in_the_query_name_the_parameter(broker: BrokerProcess, path: str,
                                                     name: str) -> None:
    method = "POST" if "/admin/" in path else "GET"
    status, doc, _ = call(broker, method, path)
    assert_problem(status, doc, 400, name, parameter=name)
    assert len(doc["detail"]) < 300


@pytest.mark.parametrize("value", ["²", NINES, "+1"])
def test_bad_last_event_id_is_refused(broker: BrokerProcess, value: str) -> None:
    status, doc, _ = call(broker, "GET", "/v1/stream", headers={"Last-Event-ID": value})
    assert_problem(status, doc, 400, "Last-Event-ID", parameter="Last-Event-ID")


# -- pull leases --------------------------------------------------------------------------------

@pytest.mark.parametrize("lease", ["².1.x", "٣.1.x", NINES + ".1.x", "-1.1.x", ""])
def test_a_malformed_lease_is_refused(broker: BrokerProcess, lease: str) -> None:
    for verb in ("ack", "release", "reject", "renew"):
        status, doc, _ = call(broker, "POST", f"/v1/subscriptions/pull/{verb}",
                              {"leases": [lease]})
        assert_problem(status, doc, 400, "lease token", field="leases")


def test_a_real_lease_still_settles(broker: BrokerProcess) -> None:
    status, doc, _ = call(broker, "POST", "/v1/events", make_event(type="numbers.pull"),
                          headers=STRUCTURED)
    assert status == 201, doc
    status, doc, _ = call(broker, "POST", "/v1/subscriptions/pull/receive",
                          {"max": 10, "wait_s": 0})
    assert status == 200 and doc, doc
    leases = [m["lease"] for m in doc]
    status, doc, _ = call(broker, "POST", "/v1/subscriptions/pull/ack", {"leases": leases})
    assert status == 200, doc


def test_too_many_leases_in_one_call(broker: BrokerProcess) -> None:
    status, doc, _ = call(broker, "POST", "/v1/subscriptions/pull/ack",
                          {"leases": ["1.1.x"] * 1001})
    assert_problem(status, doc, 400, "at most 1000", field="leases")


# -- numbers from peers, files and the command line -------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), ("²", None), ("٣", None), (NINES, float(RETRY_AFTER_CAP)),
])
def test_retry_after_from_a_webhook_receiver(value: str, expected: float | None) -> None:
    assert retry_after_seconds(value, now=0.0) == expected


def test_a_signature_timestamp_of_unicode_digits_is_rejected() -> None:
    from broker.plugin_host.api import Reject, SourceRequest
    from plugins._signatures import scheme_of, verify

    scheme = scheme_of({"scheme": "stripe", "secret_env": "X"}, "t")
    for stamp in ("²", "٣", NINES):
        request = SourceRequest("POST", "", {"Stripe-Signature": f"t={stamp},v1=ab"}, {},
                                b"{}", {})
        with pytest.raises(Reject, match="not Unix seconds"):
            verify(scheme, request, "whsec_x", now=lambda: 0)


def opsbus(cwd: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60,
                          env={**clean, "PYTHONPATH": str(ROOT), "OPSBUS_TOKEN": ADMIN_TOKEN,
                               **(env or {})})


@pytest.mark.parametrize(("args", "env", "words"), [
    (["serve", "--hop-limit", "²"], None, ("--hop-limit", "whole number")),
    (["serve", "--max-batch-events", NINES], None, ("--max-batch-events", "at most")),
    (["serve"], {"OPSBUS_HOP_LIMIT": "٣"}, ("OPSBUS_HOP_LIMIT", "whole number")),
    (["serve", "--listen", "127.0.0.1:²"], None, ("listen", "port")),
    (["serve", "--listen", "127.0.0.1:70000"], None, ("listen", "at most 65535")),
    (["todo", "show", "²"], None, ("whole number",)),
    (["tail", "--after", NINES], None, ("--after", "at most")),
    (["replay", "x", "--batch", "٣"], None, ("--batch", "whole number")),
])
def test_the_command_line_says_one_line(tmp_path: Path, args: list[str],
                                        env: dict[str, str] | None,
                                        words: tuple[str, ...]) -> None:
    done = opsbus(tmp_path, *args, env=env)
    assert done.returncode in (1, 2), done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in done.stderr
