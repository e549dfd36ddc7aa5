"""Schemathesis against `/v1/openapi.json` of a real broker: valid and invalid requests
generated from the document for every operation, a few each, and not one answered with a
5xx. Bounded so it runs in about a minute; a failure lists every 5xx with its request."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from tests.broker_process import BrokerProcess
from tests.conftest import make_event
from tests.security.problems import call

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
"""Generated requests per operation and generation mode (valid, invalid); raise it with
FUZZ_EXAMPLES=200 for a long hunt."""
SKIPPED = {
    ("GET", "/v1/stream"),  # an endless Server-Sent Events stream
    ("POST", "/v1/admin/backup"),  # a copy of the whole store per request: slow, not risky
}
"""Operations not fuzzed, each for the reason given."""

CONFIG = """
[[queues]]
name = "q"
group_key = "{subject}"

[[routes]]
name = "to-q"
filter = { exact = { type = "fuzz.todo" } }
targets = ["queue:q"]

[[subscriptions]]
name = "pull"
type = "pull"
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         args=["--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def auth_headers(data_dir: Path) -> dict[str, str]:
    """The admin token the broker keeps in its data directory, when it requires one."""
    token = data_dir / "admin.token"
    if token.exists():
        return {"Authorization": f"Bearer {token.read_text().strip()}"}
    return {}


def describe(case: Any, response: Any) -> str:
    body = case.body if not isinstance(case.body, bytes) else case.body[:200]
    return (f"{case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r}"
            f" body={str(body)[:300]} -> {response.status_code} {response.text[:300]}")


def test_no_generated_request_is_answered_with_a_5xx(broker: BrokerProcess) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode

    headers = auth_headers(broker.data_dir)
    # Something to aim at: an item, a stored event and a pull subscription with leases.
    status, doc, _ = call(broker, "POST", "/v1/events", make_event(type="fuzz.todo"),
                          headers={"Content-Type": "application/cloudevents+json", **headers})
    assert status == 201, doc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's own deprecation chatter
        schema = schemathesis.openapi.from_url(broker.url + "/v1/openapi.json",
                                               headers=headers, timeout=30)
    server_errors: list[str] = []
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: Any) -> None:
                response = case.call(base_url=broker.url, headers=headers, timeout=15)
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except Exception:  # a FailureGroup naming the 5xx; keep going, list them all
                    server_errors.append(describe(case, response))

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to make invalid (an operation without parameters or body)
    took = time.monotonic() - started
    assert operations > 40, operations  # the whole document was read
    assert server_errors == [], "\n".join(server_errors)
    print(f"schemathesis: {operations} operations x {EXAMPLES} examples x 2 modes, {took:.0f}s")
