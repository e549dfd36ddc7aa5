"""The bus's own events cannot be forged: `opsbus.*` types and `opsbus/*` sources from a
client are refused in every way events come in (structured, batch, binary, a source
mapping, a re-emit, a replay), while an administrator restoring an export may publish
them, marked `opsbusrestored`, and the broker's own events keep flowing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import ADMIN_TOKEN, ROOT, BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event
from tests.security.problems import assert_problem, call

CONFIG = """
[[queues]]
name = "work"
group_key = "{subject}"

[[queues]]
name = "watch"
group_key = "{subject}"

[[routes]]
name = "to-work"
filter = { exact = { type = "reserved.todo" } }
targets = ["queue:work"]

[[routes]]
name = "watch-work"
filter = { sql = "type = 'opsbus.todo.opened' AND data.item.queue = 'work'" }
targets = ["queue:watch"]

[plugins.webhook.mappings.relay]
type = "{data.kind}"
source = "{data.origin}"
id = "{data.id}"
"""

FORGED = {"type": "opsbus.todo.resolved", "source": "opsbus/todos", "subject": "1",
          "data": {"operator": "system", "note": "all good"}}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("reserved")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def events(broker: BrokerProcess, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"limit": "1000", **params}.items())
    status, doc, _ = call(broker, "GET", f"/v1/events?{query}")
    assert status == 200, doc
    return [e["event"] for e in doc["events"]]


def forged_ids(broker: BrokerProcess) -> set[str]:
    """Ids of stored events claiming to be todo changes that the broker did not make."""
    return {e["id"] for e in events(broker, type="opsbus.todo.resolved")}


@pytest.mark.parametrize("attrs", [
    FORGED,
    {"type": "opsbus.loop.detected"},
    {"type": "opsbus"},
    {"source": "opsbus/todos", "type": "looks.harmless"},
    {"source": "opsbus", "type": "looks.harmless"},
])
def test_a_structured_publish_of_a_reserved_event_is_refused(broker: BrokerProcess,
                                                             attrs: dict[str, Any]) -> None:
    event = make_event(**attrs)
    status, doc, _ = call(broker, "POST", "/v1/events", event, headers=STRUCTURED)
    attribute = "type" if attrs.get("type", "").startswith("opsbus") else "source"
    assert_problem(status, doc, 403, "reserved for the broker", attribute=attribute,
                   type="https://opsbus.dev/problems/reserved-event")
    assert events(broker, id=event["id"]) == []


def test_a_batch_holding_a_reserved_event_names_it_and_stores_nothing(
        broker: BrokerProcess) -> None:
    batch = [make_event(source="tests/reserved/batch"), make_event(**FORGED)]
    status, doc, _ = call(broker, "POST", "/v1/events", batch, headers=BATCH)
    assert_problem(status, doc, 403, "batch entry 1", attribute="type", index=1)
    assert events(broker, source="tests/reserved/batch") == []
    assert batch[1]["id"] not in forged_ids(broker)


@pytest.mark.parametrize("spelled", ["\\u006fpsbus.todo.resolved", "ops\\u0062us"])
def test_a_batch_spelling_a_reserved_type_with_escapes_is_refused(
        broker: BrokerProcess, spelled: str) -> None:
    """The batch path looks for the reserved prefix in the body's bytes first; an
    escape may spell it without those bytes."""
    forged = make_event(source="tests/reserved/escaped")
    raw = json.dumps([make_event(source="tests/reserved/escaped"), {**forged, "type": "T"}])
    raw = raw.replace('"T"', f'"{spelled}"')
    assert "opsbus" not in raw
    status, doc, _ = call(broker, "POST", "/v1/events", headers=BATCH, raw=raw.encode())
    assert_problem(status, doc, 403, "batch entry 1", attribute="type", index=1)
    assert events(broker, source="tests/reserved/escaped") == []


def test_a_binary_publish_of_a_reserved_event_is_refused(broker: BrokerProcess) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "forged-binary", "ce-source": "opsbus/todos",
               "ce-type": "opsbus.todo.resolved", "ce-subject": "1"}
    status, doc, _ = call(broker, "POST", "/v1/events", raw=b'{"operator": "system"}',
                          headers=headers)
    assert_problem(status, doc, 403, "reserved", attribute="type")
    assert "forged-binary" not in forged_ids(broker)


def test_a_client_cannot_set_the_restored_marker(broker: BrokerProcess) -> None:
    event = make_event(opsbusrestored=True)
    status, doc, _ = call(broker, "POST", "/v1/events", event, headers=STRUCTURED)
    assert_problem(status, doc, 403, "opsbusrestored", attribute="opsbusrestored")


def test_a_source_mapping_cannot_make_one(broker: BrokerProcess) -> None:
    status, doc, _ = call(broker, "POST", "/v1/sources/webhook/relay", {
        "kind": "opsbus.todo.resolved", "origin": "opsbus/todos", "id": "forged-by-mapping"})
    assert status == 422, doc
    assert "reserved" in doc["detail"] and doc["attribute"] == "type", doc
    assert "forged-by-mapping" not in forged_ids(broker)
    status, doc, _ = call(broker, "POST", "/v1/sources/webhook/relay", {
        "kind": "relay.ok", "origin": "relay/host", "id": "fine"})
    assert status == 200, doc


def test_reemit_cannot_publish_one(broker: BrokerProcess) -> None:
    status, doc, _ = call(broker, "POST", "/v1/events",
                          make_event(type="reserved.todo", subject="disk-1"), headers=STRUCTURED)
    assert status == 201, doc
    status, doc, _ = call(broker, "GET", "/v1/todos?queue=work")
    item = doc["items"][0]["id"]
    for attributes in ({"type": "opsbus.todo.resolved"}, {"source": "opsbus/todos"},
                       {"opsbusrestored": True}):
        status, doc, _ = call(broker, "POST", f"/v1/todos/{item}/reemit",
                              {"operator": "ann", "attributes": attributes})
        name = next(iter(attributes))
        assert_problem(status, doc, 403, "reemit", attribute=name, field=f"attributes.{name}")
    # The watch queue holds the broker's own `opsbus.todo.opened` event of that item: a
    # copy of it would be a forged audit event too.
    status, doc, _ = call(broker, "GET", "/v1/todos?queue=watch")
    watched = doc["items"][0]["id"]
    status, doc, _ = call(broker, "POST", f"/v1/todos/{watched}/reemit", {"operator": "ann"})
    assert_problem(status, doc, 403, "reemit", attribute="type")
    # An ordinary re-emit still works.
    status, doc, _ = call(broker, "POST", f"/v1/todos/{item}/reemit", {"operator": "ann"})
    assert status == 200 and doc["event"]["seq"], doc


def test_the_broker_own_events_still_flow(broker: BrokerProcess) -> None:
    status, doc, _ = call(broker, "POST", "/v1/events",
                          make_event(type="reserved.todo", subject="disk-2"), headers=STRUCTURED)
    assert status == 201, doc
    opened = events(broker, type="opsbus.todo.opened", source="opsbus/todos")
    assert any(e["data"]["item"]["key"] == "disk-2" for e in opened)
    assert all("opsbusrestored" not in e for e in opened)


# -- restoring an export -----------------------------------------------------------------------

def test_an_administrator_restores_reserved_events_marked(broker: BrokerProcess) -> None:
    forged = make_event(**FORGED, id="restored-1")
    plain = make_event(source="tests/reserved/restore", id="plain-1")
    status, doc, _ = call(broker, "POST", "/v1/events", [plain, forged],
                          headers={**BATCH, "Opsbus-Restore": "true"})
    assert status == 200 and [d["duplicate"] for d in doc] == [False, False], doc
    (stored,) = [e for e in events(broker, type="opsbus.todo.resolved")
                 if e["id"] == "restored-1"]
    assert stored["opsbusrestored"] is True
    assert {k: v for k, v in stored.items() if k != "opsbusrestored"} == forged
    assert "opsbusrestored" not in events(broker, source="tests/reserved/restore")[0]
    # Restoring the same export again is idempotent.
    status, doc, _ = call(broker, "POST", "/v1/events", forged,
                          headers={**STRUCTURED, "Opsbus-Restore": "true"})
    assert status == 200 and doc["duplicate"] is True, doc


@pytest.mark.parametrize("value", ["yes please", "1", "TRUE!"])
def test_the_restore_header_is_true_or_false(broker: BrokerProcess, value: str) -> None:
    status, doc, _ = call(broker, "POST", "/v1/events", make_event(**FORGED),
                          headers={**STRUCTURED, "Opsbus-Restore": value})
    assert_problem(status, doc, 400, "Opsbus-Restore", parameter="Opsbus-Restore")


def test_restore_false_is_an_ordinary_publish(broker: BrokerProcess) -> None:
    status, doc, _ = call(broker, "POST", "/v1/events", make_event(**FORGED),
                          headers={**STRUCTURED, "Opsbus-Restore": "false"})
    assert_problem(status, doc, 403, "reserved", attribute="type")


def opsbus(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60,
                          env={**env, "PYTHONPATH": str(ROOT), "OPSBUS_TOKEN": ADMIN_TOKEN})


def test_replay_refuses_them_by_name_and_restore_brings_them_back(
        broker: BrokerProcess, tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson"
    lines = [make_event(source="tests/reserved/replay", id="r-plain"),
             make_event(**{**FORGED, "id": "r-forged"})]
    export.write_text("\n".join(json.dumps(e) for e in lines) + "\n")

    done = opsbus("replay", str(export), "--json", "--url", broker.url)
    assert done.returncode == 1, done
    summary = json.loads(done.stdout)
    assert summary["sent"] == 1 and len(summary["rejected"]) == 1, summary
    assert "reserved for the broker" in summary["rejected"][0]["error"]
    assert "r-forged" not in forged_ids(broker)

    done = opsbus("replay", str(export), "--restore", "--json", "--url", broker.url)
    assert done.returncode == 0, done
    summary = json.loads(done.stdout)
    # Verbatim: both go in under their own ids (the first run gave r-plain a new one).
    assert summary["rejected"] == [] and summary["sent"] == 2, summary
    (restored,) = [e for e in events(broker, type="opsbus.todo.resolved")
                   if e["id"] == "r-forged"]
    assert restored["opsbusrestored"] is True and restored["replay"] == summary["run"]


def test_an_embedded_emitter_refuses_a_reserved_type() -> None:
    from broker.embed import CallEmitter

    with pytest.raises(ValueError, match="broker's own"):
        CallEmitter("http://127.0.0.1:9", name="billing", event_type="opsbus.api.x.call")
    with pytest.raises(ValueError, match="broker's own"):
        CallEmitter("http://127.0.0.1:9", name="billing", source="opsbus/proxy")


async def test_only_an_administrator_may_restore(secured, http, bare) -> None:
    from tests.security.support import call as call_as
    from tests.security.support import make_token

    publisher = await make_token(http, secured, "restorer-without-admin", "publish", "read")
    forged = make_event(**FORGED)
    status, problem, _ = await call_as(bare, "POST", secured.url + "/v1/events", publisher,
                                       data=json.dumps(forged).encode(),
                                       headers={**STRUCTURED, "Opsbus-Restore": "true"})
    assert status == 403 and "admin" in problem["detail"], problem
    assert problem.get("scope") == "admin", problem
    admin = await make_token(http, secured, "restorer-admin", "admin")
    status, answer, _ = await call_as(bare, "POST", secured.url + "/v1/events", admin,
                                      data=json.dumps(forged).encode(),
                                      headers={**STRUCTURED, "Opsbus-Restore": "true"})
    assert status == 201, answer
