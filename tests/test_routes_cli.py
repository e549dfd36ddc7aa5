"""`opsbus routes`: list, apply, delete, and `test` both locally (--config, no broker) and
through a running broker, with draft routes and history runs."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import orjson
import pytest

from tests.broker_process import ROOT, BrokerProcess


def opsbus(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    cmd = [sys.executable, "-m", "broker", *args, *(["--url", url] if url else [])]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("routes-cli") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def test_routes_test_with_config_prints_where_each_sample_event_goes():
    """No broker at all: the routes are compiled from the file itself."""
    done = opsbus("routes", "test", "sample_events/", "--config", "sample_events/opsbus.toml",
                  url="http://127.0.0.1:9")  # nothing listens there
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("sample_events/alertmanager.ndjson:line 2  "
                               "prometheus.alert.firing") and "prod-alerts → queue:alerts" in line
               for line in lines)
    assert any("certificates.json:item 2" in line and "(no route)" in line for line in lines)
    assert any("selftest-ping.json" in line and "(no route)" in line for line in lines)
    assert "79 events: 53 routed, 26 unmatched, 0 unreadable" in done.stdout

    done = opsbus("routes", "test", "sample_events/", "--config", "sample_events/opsbus.toml",
                  "--json")
    report = orjson.loads(done.stdout)
    assert report["summary"]["routes"] == {
        "prod-alerts": 18, "deploy-results": 10, "access-requests": 6, "crash-loops": 5,
        "expiring-certificates": 2, "disk-space": 3, "slow-queries": 3, "backup-results": 6}
    assert report["summary"]["targets"]["queue:platform"] == 10
    assert report["results"][0]["path"] == "sample_events/alertmanager.ndjson"


def test_a_draft_route_replaces_its_namesake_locally(tmp_path):
    draft = tmp_path / "selftest.json"
    draft.write_text(orjson.dumps({"name": "selftest", "filter": {"exact": {
        "type": "selftest.ping"}}, "targets": ["queue:platform"]}).decode())
    done = opsbus("routes", "test", "sample_events/selftest-ping.json", "--config",
                  "sample_events/opsbus.toml", "--route", str(draft))
    assert "selftest → queue:platform" in done.stdout, done.stdout + done.stderr


def test_unreadable_entries_are_reported_with_their_position(tmp_path):
    (tmp_path / "mixed.ndjson").write_text(
        '{"specversion":"1.0","id":"1","source":"s","type":"t"}\n'
        "{not json\n"
        '{"specversion":"1.0","id":"2","type":"t"}\n')
    done = opsbus("routes", "test", str(tmp_path), "--config", "sample_events/opsbus.toml")
    assert done.returncode == 1
    assert "mixed.ndjson:line 2  ! not valid JSON" in done.stdout
    assert "mixed.ndjson:line 3  ! missing required attribute 'source'" in done.stdout
    assert "3 events: 0 routed, 1 unmatched, 2 unreadable" in done.stdout


def test_apply_list_test_and_delete_against_a_broker(broker, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    routes = tmp_path / "routes.toml"
    routes.write_text(f'''
[[routes]]
name = "{name}"
description = "from the CLI test"
filter = {{ sql = "type LIKE 'prometheus.alert.%' AND data.labels.severity = 'critical'" }}
targets = ["plugin:pager"]

[[routes]]
name = "{name}-ci"
filter = {{ prefix = {{ type = "ci.deploy." }} }}
targets = ["plugin:ci"]
enabled = false
''')
    done = opsbus("routes", "apply", str(routes), url=broker.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 created, 0 updated, 0 unchanged, 0 failed")
    done = opsbus("routes", "apply", str(routes), url=broker.url)
    assert done.stdout.startswith("0 created, 0 updated, 2 unchanged")

    done = opsbus("routes", "list", url=broker.url)
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "ENABLED", "FILTER", "TARGETS", "ORIGIN"]
    assert any(row.startswith(f"{name}-ci ") and " no " in row and "plugin:ci" in row
               for row in rows)
    listed = orjson.loads(opsbus("routes", "list", "--json", url=broker.url).stdout)
    # The JSON listing applies back unchanged.
    export = tmp_path / "routes.json"
    export.write_bytes(orjson.dumps(listed))
    assert "0 created, 0 updated" in opsbus("routes", "apply", str(export), url=broker.url).stdout

    done = opsbus("routes", "test", "sample_events/alertmanager.ndjson", url=broker.url)
    assert done.returncode == 0, done.stderr
    assert f"{name} → plugin:pager" in done.stdout
    assert f"{name}-ci" not in done.stdout  # disabled routes are not in the table

    done = opsbus("routes", "delete", name, f"{name}-ci", url=broker.url)
    assert done.returncode == 0
    assert name not in opsbus("routes", "list", url=broker.url).stdout


def test_apply_refuses_an_invalid_file_before_changing_anything(broker, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "fine-one", "filter": {}, "targets": ["plugin:a"]},'
                   ' {"name": "broken", "filter": {"sql": "type ="}, "targets": ["plugin:a"]}]')
    done = opsbus("routes", "apply", str(bad), url=broker.url)
    assert done.returncode == 1
    assert "routes[1]" in done.stderr and "column" in done.stderr
    assert "fine-one" not in opsbus("routes", "list", url=broker.url).stdout


def test_history_runs_a_draft_route_over_stored_events(broker, tmp_path):
    assert opsbus("replay", "sample_events/", url=broker.url).returncode == 0
    draft = tmp_path / "draft.toml"
    draft.write_text('name = "certs"\n'
                     "filter = { sql = \"type = 'cert.expiring' AND data.severity IN "
                     "('critical', 'warning')\" }\n"
                     'targets = ["queue:platform"]\n')
    done = opsbus("routes", "test", "--route", str(draft), "--history", "1h", url=broker.url)
    assert done.returncode == 0, done.stderr
    assert "route certs over events received" in done.stdout
    assert "matched 2" in done.stdout
    assert "would open 2 items" in done.stdout
    report = orjson.loads(opsbus("routes", "test", "--route", str(draft), "--history", "1h",
                                 "--json", url=broker.url).stdout)
    assert {m["subject"] for m in report["matches"]} == {
        "api.acme.example", "grafana.internal.acme.example"}


def test_history_needs_a_draft_route():
    done = opsbus("routes", "test", "--history", "1h", url="http://127.0.0.1:9")
    assert done.returncode == 1 and "--route" in done.stderr
