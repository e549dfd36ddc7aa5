"""The generic webhook source: a declarative mapping in opsbus.toml turns JSON into events."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.plugin_helpers import events_of, post_source

# A Statuspage incident notification, in the shape Statuspage's webhook documentation shows.
STATUSPAGE = {
    "meta": {"unsubscribe": "https://status.example.com/?unsubscribe=j0vqr9kl3513",
             "documentation": "https://support.atlassian.com/statuspage/"},
    "page": {"id": "j2mfxwj97wnj", "status_indicator": "major",
             "status_description": "Partial System Outage"},
    "incident": {
        "backfilled": False, "created_at": "2026-11-25T14:01:51-06:00", "impact": "major",
        "impact_override": None, "monitoring_at": None, "postmortem_body": None,
        "resolved_at": None, "shortlink": "https://stspg.io/18zyDQx", "status": "identified",
        "updated_at": "2026-11-25T14:30:35-06:00", "id": "lbkhbwn21v5q",
        "name": "Payment provider timeouts",
        "incident_updates": [{
            "body": "The provider confirmed elevated error rates.", "status": "identified",
            "created_at": "2026-11-25T14:30:35-06:00", "id": "drfcwbnpxnr6",
            "incident_id": "lbkhbwn21v5q"}],
    },
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("webhook")
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent("""
        [plugins.webhook.mappings.statuspage]
        type = "statuspage.{data.page.status_indicator}"
        source = "statuspage"
        subject = "{data.incident.id}"
        id = "{data.incident.id}-{data.incident.updated_at}"
        time = "{data.incident.updated_at}"
        extensions = { dedupkey = "{data.incident.id}" }

        [plugins.webhook.mappings.bare]
        type = "legacy.{data.kind}"
        source = "legacy/{data.host}"
    """))
    proc = BrokerProcess(root / "data", config=config, args=["--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_statuspage_mapping(broker, http):
    status, answer = await post_source(http, broker, "webhook/statuspage",
                                       orjson.dumps(STATUSPAGE))
    assert status == 200, answer
    (event,) = await events_of(http, broker, source="statuspage")
    assert event["id"] == "lbkhbwn21v5q-2026-11-25T14:30:35-06:00"
    assert event["type"] == "statuspage.major"
    assert event["subject"] == "lbkhbwn21v5q" and event["dedupkey"] == "lbkhbwn21v5q"
    assert event["time"] == "2026-11-25T14:30:35-06:00"
    assert event["data"] == STATUSPAGE
    status, again = await post_source(http, broker, "webhook/statuspage",
                                      orjson.dumps(STATUSPAGE))
    assert again["events"][0]["duplicate"] is True


async def test_missing_value_names_the_template(broker, http):
    payload = copy.deepcopy(STATUSPAGE)
    del payload["incident"]["id"]
    status, problem = await post_source(http, broker, "webhook/statuspage", orjson.dumps(payload))
    assert status == 422
    assert problem["plugin"] == "webhook" and "{data.incident.id}" in problem["detail"]


async def test_array_body_and_content_hash_ids(broker, http):
    items = [{"kind": "disk", "host": "db-1", "pct": 91}, {"kind": "disk", "host": "db-2"}]
    status, answer = await post_source(http, broker, "webhook/bare", orjson.dumps(items))
    assert status == 200 and len(answer["events"]) == 2
    again = await post_source(http, broker, "webhook/bare", orjson.dumps(items))
    assert [r["duplicate"] for r in again[1]["events"]] == [True, True]
    stored = await events_of(http, broker, source="legacy/db-1")
    assert stored[0]["type"] == "legacy.disk" and "subject" not in stored[0]


async def test_unknown_mapping_is_404(broker, http):
    status, problem = await post_source(http, broker, "webhook/nosuch", b"{}")
    assert status == 404 and "statuspage" in problem["detail"]
