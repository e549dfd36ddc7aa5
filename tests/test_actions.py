"""API actions against real local receivers: result events with lineage, escaping of
template values, outbound address guard, replay recording, retries, rate limit, and
operator quick actions on todo items."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from broker.timeutil import seconds_between
from tests.broker_process import BrokerProcess
from tests.delivery_support import (
    call,
    events_of_type,
    eventually,
    publish,
    put_object,
)

CONFIG = """
[[queues]]
name = "work"
group_key = "{subject}"
actions = ["restart-pod", { name = "unconfigured-action" }]

[[routes]]
name = "work"
filter = { exact = { type = "test.work" } }
targets = ["queue:work"]
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("actions")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         env={"PAGER_TOKEN": "s3cret-token"}, args=[
                             "--allow-private-targets", "--delivery-poll-s", "0.1",
                             "--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def action_for(http, base: str, **spec) -> tuple[str, str]:
    """An action plus a route from its own event type to it: (name, type)."""
    name = spec.pop("name", f"act-{uuid.uuid4().hex[:8]}")
    etype = f"test.{name}"
    await put_object(http, base, "actions", {"name": name, "retry_backoff": "50ms", **spec})
    await put_object(http, base, "routes", {"name": f"to-{name}",
                                            "filter": {"exact": {"type": etype}},
                                            "targets": [f"action:{name}"]})
    return name, etype


async def outcome_of(http, base: str, name: str, kind: str = "succeeded") -> dict:
    async def found():
        return await events_of_type(http, base, f"opsbus.action.{kind}", subject=name)

    [event] = await eventually(found)
    return event


PAGER = {
    "method": "POST",
    "url": "/alerts/{subject}?instance={data.labels.instance}&tag=fixed",
    "headers": {"X-Subject": "{subject}", "X-Team": "ops"},
    "body": {"summary": "{data.summary}", "labels": "{data.labels}", "count": "{data.n}",
             "text": "alert {subject} x{data.n}", "static": [1, True]},
    "auth": {"type": "bearer", "token_env": "PAGER_TOKEN"},
}


async def test_result_event_carries_causation_and_correlation(broker, http, receiver):
    name, etype = await action_for(http, broker.url, **{**PAGER,
                                                        "url": receiver.url + PAGER["url"]})
    sent = await publish(http, broker.url, type=etype, subject="db-1", correlationid="inc-7",
                         data={"summary": "disk full", "n": 3,
                               "labels": {"instance": "db-1:9100", "severity": "page"}})
    result = await outcome_of(http, broker.url, name)
    assert result["causationid"] == sent["id"] and result["correlationid"] == "inc-7"
    assert result["source"] == "opsbus/actions"
    data = result["data"]
    assert data["status"] == 200 and data["ok"] is True and data["latency_ms"] >= 0
    assert data["response"]["body"] == '{"ok": true}' and data["attempts"] == 1
    [got] = receiver.requests
    assert got.raw_path == "/alerts/db-1?instance=db-1%3A9100&tag=fixed"
    assert got.headers["Authorization"] == "Bearer s3cret-token"
    assert got.headers["X-Subject"] == "db-1" and got.headers["X-Team"] == "ops"
    assert got.json == {"summary": "disk full", "count": 3, "text": "alert db-1 x3",
                        "labels": {"instance": "db-1:9100", "severity": "page"},
                        "static": [1, True]}


async def test_template_injection_changes_only_the_value(broker, http, receiver):
    name, etype = await action_for(http, broker.url, **{**PAGER,
                                                        "url": receiver.url + PAGER["url"]})
    subject = "../../admin/x?y=1#z"
    instance = 'i"1\r\nX-Injected: yes&tag=evil'
    summary = '", "admin": true, "x": "'
    await publish(http, broker.url, type=etype, subject=subject,
                  data={"summary": summary, "n": '1}, "admin": true',
                        "labels": {"instance": instance}})
    await outcome_of(http, broker.url, name)
    [got] = receiver.requests
    path, _, query = got.raw_path.partition("?")
    assert path == "/alerts/..%2F..%2Fadmin%2Fx%3Fy%3D1%23z"  # one segment, cannot climb
    assert parse_qs(query) == {"instance": [instance], "tag": ["fixed"]}
    assert "X-Injected" not in got.headers
    assert got.headers["X-Subject"] == subject
    body = got.json
    assert set(body) == {"summary", "labels", "count", "text", "static"}
    assert body["summary"] == summary and body["count"] == '1}, "admin": true'
    assert body["labels"] == {"instance": instance}


async def test_dot_segments_from_event_data_are_encoded(broker, http, receiver):
    name, etype = await action_for(http, broker.url, method="GET",
                                   url=receiver.url + "/pods/{subject}/restart")
    await publish(http, broker.url, type=etype, subject="..")
    await outcome_of(http, broker.url, name)
    assert receiver.requests[0].raw_path == "/pods/%2E%2E/restart"


async def test_missing_url_field_fails_the_action(broker, http, receiver):
    name, etype = await action_for(http, broker.url, url=receiver.url + "/x/{data.pod}")
    await publish(http, broker.url, type=etype, data={})
    failed = await outcome_of(http, broker.url, name, "failed")
    assert "data.pod" in failed["data"]["error"] and receiver.requests == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://metadata.google.internal/computeMetadata/v1/",
                                 "http://[fd00:ec2::254]/latest/"])
async def test_metadata_addresses_are_refused(broker, http, url):
    name, etype = await action_for(http, broker.url, url=url, retries=3)
    sent = await publish(http, broker.url, type=etype)
    failed = await outcome_of(http, broker.url, name, "failed")
    assert "metadata" in failed["data"]["error"]
    assert failed["data"]["attempts"] == 1  # a refusal is not retried
    assert failed["causationid"] == sent["id"]


async def test_loopback_is_refused_without_allow_private_targets(tmp_path: Path, http,
                                                                 receiver):
    proc = BrokerProcess(tmp_path / "data", args=["--delivery-poll-s", "0.1"]).start()
    try:
        for url in (receiver.url + "/x", f"http://localhost:{receiver.port}/x"):
            name, etype = await action_for(http, proc.url, url=url)
            await publish(http, proc.url, type=etype)
            failed = await outcome_of(http, proc.url, name, "failed")
            assert "loopback" in failed["data"]["error"]
            assert "allow_private_targets" in failed["data"]["error"]
        assert receiver.requests == []
    finally:
        proc.stop()


async def test_replayed_event_records_the_request_instead(broker, http, receiver):
    name, etype = await action_for(http, broker.url, **{**PAGER,
                                                        "url": receiver.url + PAGER["url"]})
    sent = await publish(http, broker.url, type=etype, subject="db-2", replay="run-9",
                         data={"summary": "s", "n": 1, "labels": {"instance": "i-1"}})

    async def recorded():
        return await events_of_type(http, broker.url, "opsbus.action.recorded",
                                    subject=f"action:{name}")

    [record] = await eventually(recorded)
    assert record["causationid"] == sent["id"] and record["data"]["replay"] == "run-9"
    request = record["data"]["request"]
    assert request["method"] == "POST"
    assert request["url"] == receiver.url + "/alerts/db-2?instance=i-1&tag=fixed"
    assert request["headers"]["Authorization"] == "***"
    assert request["headers"]["X-Subject"] == "db-2"
    assert '"summary":"s"' in request["body"]
    # Recorded in the event's own commit instead of a job: no call can follow.
    assert receiver.requests == []
    assert await events_of_type(http, broker.url, "opsbus.action.succeeded",
                                subject=name) == []


async def test_server_errors_are_retried_client_errors_are_not(broker, http, receiver):
    name, etype = await action_for(http, broker.url, url=receiver.url + "/r", retries=2)
    receiver.statuses = [500, 503]
    await publish(http, broker.url, type=etype)
    result = await outcome_of(http, broker.url, name)
    assert result["data"]["attempts"] == 3 and len(receiver.requests) == 3

    other, other_type = await action_for(http, broker.url, url=receiver.url + "/r",
                                         retries=2)
    receiver.statuses = [404]
    await publish(http, broker.url, type=other_type)
    failed = await outcome_of(http, broker.url, other, "failed")
    assert failed["data"]["status"] == 404 and failed["data"]["attempts"] == 1
    jobs = await call(http, "GET", f"{broker.url}/v1/actions/{other}/jobs", expect=200)
    assert [j["state"] for j in jobs["jobs"]] == ["failed"]


async def test_a_failed_call_is_retried_after_its_backoff_not_at_once(broker, http,
                                                                     receiver):
    name, etype = await action_for(http, broker.url, url=receiver.url + "/r", retries=2)
    await put_object(http, broker.url, "actions", {"name": name, "url": receiver.url + "/r",
                                                   "retries": 2, "retry_backoff": "10m"})
    receiver.statuses = [503]
    await publish(http, broker.url, type=etype)
    await receiver.wait_for(1)

    async def waiting():
        jobs = await call(http, "GET", f"{broker.url}/v1/actions/{name}/jobs", expect=200)
        return [j for j in jobs["jobs"] if j["state"] == "pending" and j["attempts"] == 1]

    [job] = await eventually(waiting)
    # Equal jitter: at least half the backoff (ten minutes) before the second attempt.
    assert seconds_between(job["updated_at"], job["next_at"]) >= 300


async def test_rate_limit_spaces_calls(broker, http, receiver):
    _, etype = await action_for(http, broker.url, url=receiver.url + "/r", rate="10/s")
    started = time.monotonic()
    for n in range(15):
        await publish(http, broker.url, type=etype, data={"n": n})
    await receiver.wait_for(15)
    assert time.monotonic() - started >= 0.4  # 10 at once, then 10 per second


async def test_unknown_plugin_kind_fails_cleanly(broker, http):
    name, etype = await action_for(http, broker.url, kind="carrier-pigeon")
    await publish(http, broker.url, type=etype)
    failed = await outcome_of(http, broker.url, name, "failed")
    assert "carrier-pigeon" in failed["data"]["error"]


async def test_missing_secret_variable_fails_with_its_name(broker, http, receiver):
    name, etype = await action_for(http, broker.url, url=receiver.url + "/r",
                                   auth={"type": "bearer", "token_env": "NOT_SET_ANYWHERE"})
    await publish(http, broker.url, type=etype)
    failed = await outcome_of(http, broker.url, name, "failed")
    assert "NOT_SET_ANYWHERE" in failed["data"]["error"] and receiver.requests == []


async def test_action_validation_names_the_field(broker, http):
    bad = [
        ({"name": "b1", "url": "http://{data.host}/x"}, "url"),
        ({"name": "b2", "url": "http://h/{not a field}"}, "not a field"),
        ({"name": "b3", "url": "http://h/", "method": "BREW"}, "method"),
        ({"name": "b4", "url": "http://h/", "rate": "fast"}, "rate"),
        ({"name": "b5", "url": "http://h/", "auth": {"type": "bearer"}}, "token_env"),
        ({"name": "b6", "url": "http://h/", "headers": {"X": "a\nb"}}, "headers"),
    ]
    for spec, field in bad:
        problem = await call(http, "POST", f"{broker.url}/v1/actions", spec, expect=400)
        assert field in problem["detail"], problem


async def test_quick_action_on_a_todo_item(broker, http, receiver):
    await put_object(http, broker.url, "actions", {
        "name": "restart-pod", "method": "POST",
        "url": receiver.url + "/ns/{namespace}/pods/{subject}/restart",
        "body": {"reason": "{reason}", "severity": "{data.severity}"}})
    subject = f"pod-{uuid.uuid4().hex[:6]}"
    sent = await publish(http, broker.url, type="test.work", subject=subject,
                         data={"severity": "high"})

    async def item():
        page = await call(http, "GET", f"{broker.url}/v1/todos?queue=work&limit=200")
        return next((i for i in page["items"] if i["key"] == subject), None)

    todo = await eventually(item)
    url = f"{broker.url}/v1/todos/{todo['id']}/actions"
    answer = await call(http, "POST", f"{url}/restart-pod", {
        "operator": "alice", "params": {"namespace": "prod", "reason": "oom"}}, expect=200)
    assert answer["job"]["state"] == "succeeded" and answer["job"]["operator"] == "alice"
    result = answer["result"]["event"]
    assert result["type"] == "opsbus.action.succeeded"
    assert result["causationid"] == sent["id"]
    assert result["data"]["operator"] == "alice" and result["data"]["todo"] == todo["id"]
    [got] = receiver.requests
    assert got.raw_path == f"/ns/prod/pods/{subject}/restart"
    assert got.json == {"reason": "oom", "severity": "high"}
    detail = await call(http, "GET", f"{broker.url}/v1/todos/{todo['id']}", expect=200)
    [entry] = [h for h in detail["history"] if h["action"] == "actioned"]
    assert entry["operator"] == "alice" and entry["event_seq"] == answer["result"]["seq"]
    assert answer["result"]["seq"] in [e["seq"] for e in detail["events"]]

    await call(http, "POST", f"{url}/delete-cluster", {"operator": "mallory"}, expect=403)
    await call(http, "POST", f"{url}/unconfigured-action", {"operator": "bob"}, expect=409)
    await call(http, "POST", f"{url}/restart-pod", {"operator": ""}, expect=400)
    await call(http, "POST", f"{broker.url}/v1/todos/999999/actions/restart-pod",
               {"operator": "alice"}, expect=404)
