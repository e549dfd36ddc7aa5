"""The Alertmanager source: webhook payload v4 in, one event per alert, items that auto-resolve."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.plugin_helpers import events_of, post_source

# The shape of Alertmanager's webhook_config body (version 4), as in its documentation.
FIRING = {
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="ProbeFailure"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "opsbus",
    "groupLabels": {"alertname": "ProbeFailure"},
    "commonLabels": {"alertname": "ProbeFailure", "job": "http_checks", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example.org:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ProbeFailure", "instance": "https://server.example.org",
                       "job": "http_checks", "monitor": "master", "severity": "critical"},
            "annotations": {
                "description": "Instance https://server.example.org has been down for over 5m.",
                "summary": "BlackBox Probe Failure: https://server.example.org"},
            "startsAt": "2023-02-06T13:08:45.828Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1",
            "fingerprint": "1a30ba71cca2921f",
        },
        {
            "status": "firing",
            "labels": {"alertname": "ProbeFailure", "instance": "https://api.example.org",
                       "job": "http_checks", "monitor": "master", "severity": "critical"},
            "annotations": {"summary": "BlackBox Probe Failure: https://api.example.org"},
            "startsAt": "2023-02-06T13:09:15.123456789+01:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1",
            "fingerprint": "7c2e5f0d9a1b3e44",
        },
    ],
}


def resolved_payload() -> dict:
    """The next notification of the group: the first alert has resolved."""
    payload = copy.deepcopy(FIRING)
    payload["status"] = "resolved"
    alert = payload["alerts"][0]
    alert["status"], alert["endsAt"] = "resolved", "2023-02-06T13:21:45.828Z"
    payload["alerts"] = [alert]
    return payload


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("alertmanager")
    config = root / "opsbus.toml"
    # The queue and route of sample_events/opsbus.toml.
    config.write_text(textwrap.dedent("""
        [[queues]]
        name = "alerts"
        group_key = "{dedupkey}"
        title = "{data.labels.alertname} on {data.labels.instance}"
        priority = "{data.labels.severity}"
        resolve_filter = { sql = "type = 'prometheus.alert.resolved'" }

        [[routes]]
        name = "prod-alerts"
        filter = { sql = "type LIKE 'prometheus.alert.%' AND data.labels.severity = 'critical'" }
        targets = ["queue:alerts"]
    """))
    proc = BrokerProcess(Path(root) / "data", config=config, args=["--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_firing_then_resolved_opens_and_closes_items(broker, http):
    status, answer = await post_source(http, broker, "alertmanager", orjson.dumps(FIRING))
    assert status == 200, answer
    assert [r["duplicate"] for r in answer["events"]] == [False, False]

    events = await events_of(http, broker, source="alertmanager/alertmanager.example.org")
    first = next(e for e in events if e["subject"] == "1a30ba71cca2921f")
    assert first["type"] == "prometheus.alert.firing"
    assert first["dedupkey"] == "1a30ba71cca2921f"
    assert first["id"].startswith("1a30ba71cca2921f-firing-")
    assert first["time"] == "2023-02-06T13:08:45.828Z"
    data = first["data"]
    assert data["labels"]["instance"] == "https://server.example.org"
    assert data["status"] == "firing" and data["fingerprint"] == "1a30ba71cca2921f"
    assert data["groupKey"] == FIRING["groupKey"] and data["receiver"] == "opsbus"
    assert data["externalURL"] == FIRING["externalURL"]

    async with http.get(broker.url + "/v1/todos", params={"queue": "alerts"}) as resp:
        items = (await resp.json())["items"]
    assert {i["key"]: i["state"] for i in items} == {
        "1a30ba71cca2921f": "open", "7c2e5f0d9a1b3e44": "open"}
    assert {i["title"] for i in items} >= {"ProbeFailure on https://server.example.org"}

    status, answer = await post_source(http, broker, "alertmanager",
                                       orjson.dumps(resolved_payload()))
    assert status == 200, answer
    resolved = next(e for e in await events_of(http, broker, type="prometheus.alert.resolved"))
    assert resolved["time"] == "2023-02-06T13:21:45.828Z"
    assert resolved["subject"] == "1a30ba71cca2921f"
    async with http.get(broker.url + "/v1/todos", params={"queue": "alerts"}) as resp:
        items = (await resp.json())["items"]
    states = {i["key"]: i["state"] for i in items}
    assert states == {"1a30ba71cca2921f": "resolved", "7c2e5f0d9a1b3e44": "open"}


async def test_redelivered_notification_is_stored_once(broker, http):
    payload = copy.deepcopy(FIRING)
    payload["alerts"] = payload["alerts"][1:]
    payload["alerts"][0]["fingerprint"] = "0000redelivered"
    first = await post_source(http, broker, "alertmanager", orjson.dumps(payload))
    again = await post_source(http, broker, "alertmanager", orjson.dumps(payload))
    assert first[0] == again[0] == 200
    assert first[1]["events"][0]["duplicate"] is False
    assert again[1]["events"][0] == {**first[1]["events"][0], "duplicate": True}


async def test_other_versions_and_shapes_are_refused(broker, http):
    status, problem = await post_source(http, broker, "alertmanager",
                                        orjson.dumps({**FIRING, "version": "3"}))
    assert status == 422 and problem["plugin"] == "alertmanager"
    status, problem = await post_source(http, broker, "alertmanager", b'{"hello": 1}')
    assert status == 400 and "alerts" in problem["detail"]
    status, problem = await post_source(http, broker, "alertmanager", b"not json")
    assert status == 400
