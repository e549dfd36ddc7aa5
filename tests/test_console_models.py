"""The console's models without a screen: sort orders, urgency, bounded memory, the
on-call announcements, free text beside CESQL, key fields of events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from console.models.items import key_fields, sort_items
from console.models.oncall import MAX_TRACKED, OnCall
from console.models.queues import ALL_QUEUES, MAX_ITEMS, QueuesModel
from console.models.stream import Query, StreamModel, is_free_text

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def item(ident: int, priority: str | None, first_seen: str = "2026-11-25T10:00:00Z",
         **extra: Any) -> dict[str, Any]:
    return {"id": ident, "queue": "ops", "key": f"k{ident}", "title": f"t{ident}",
            "state": "open", "priority": priority, "owner": None, "count": 1,
            "first_seen": first_seen, "updated_at": first_seen, "event_seq": ident,
            "snoozed_until": None, **extra}


def test_priority_then_age_critical_on_top() -> None:
    items = [item(1, "warning", "2026-11-25T09:00:00Z"), item(2, "critical", "2026-11-25T11:00Z"),
             item(3, None), item(4, "critical", "2026-11-25T08:00:00Z"), item(5, "HIGH"),
             item(6, "p4"), item(7, "surprising")]
    assert [i["id"] for i in sort_items(items)] == [4, 2, 5, 1, 6, 7, 3]
    assert sort_items(items, "priority", reverse=True)[0]["id"] == 3


def test_the_item_list_stays_bounded_keeping_the_most_urgent() -> None:
    model = QueuesModel("ana", lambda: NOW)
    model.queue = ALL_QUEUES
    for n in range(MAX_ITEMS + 300):
        model.apply(item(n, "critical" if n % 100 == 0 else "info",
                         updated_at="2026-11-25T10:00:00Z"))
    assert len(model.items) == MAX_ITEMS and model.more
    assert all(n in model.items for n in range(0, MAX_ITEMS + 300, 100))


def test_oncall_announces_each_new_urgent_item_once_and_stays_bounded() -> None:
    heard: list[int] = []
    oncall = OnCall(lambda: NOW)
    oncall.announce = lambda i: heard.append(i["id"])
    oncall.loaded = True
    oncall.apply(item(1, "critical"))
    oncall.apply({**item(1, "critical"), "count": 2, "updated_at": "2026-11-25T10:01:00Z"})
    oncall.apply(item(2, "warning"))
    oncall.apply(item(3, "high"))
    assert heard == [1, 3] and oncall.unclaimed_critical == 1
    oncall.apply({**item(1, "critical"), "state": "claimed", "owner": "bo",
                  "updated_at": "2026-11-25T10:02:00Z"})
    assert oncall.unclaimed_critical == 0
    oncall.apply({**item(4, "critical"), "snoozed_until": "2026-11-25T13:00:00Z"})
    assert oncall.unclaimed_critical == 0  # snoozed: not waiting for anyone now
    for n in range(10, 10 + MAX_TRACKED + 50):
        oncall.apply(item(n, "critical"))
    assert len(oncall.urgent) == MAX_TRACKED


def test_bare_words_are_a_search_and_own_events_are_hidden_by_default() -> None:
    assert is_free_text("orders") and is_free_text("db-1 timeout")
    assert not is_free_text("type = 'x'") and not is_free_text("NOSUCHFN(type) = 1")
    assert not is_free_text("subject LIKE 'db%'") and not is_free_text("a AND b")
    words = Query("orders")
    assert words.text == "orders" and words.cesql == (
        "NOT (type LIKE 'opsbus.%' OR source LIKE 'opsbus/%')")
    cesql = Query("type = 'x'", hide_own=False)
    assert cesql.text is None and cesql.cesql == "(type = 'x')"


def test_paused_stream_holds_a_bounded_window_and_knows_the_gap() -> None:
    model = StreamModel(window=10, clock=lambda: 0.0)
    model.pause()
    assert model.arrived([(n, {}) for n in range(25)]) == []
    assert len(model.held) == 10 and model.held_count == 25 and model.gap
    assert model.resume() is None  # the gap: reload the newest instead


def test_key_fields_of_an_alert() -> None:
    fields = key_fields({"type": "prometheus.alert.firing", "data": {
        "labels": {"alertname": "X", "severity": "critical", "namespace": "db",
                   "cluster": "orders"},
        "annotations": {"summary": "lag is high", "runbook_url": "https://rb/x"}}})
    assert fields.summary == "lag is high" and fields.runbook == "https://rb/x"
    assert fields.labels == (("namespace", "db"), ("cluster", "orders"))
    assert key_fields({"data": "plain text\nmessage"}).summary == "plain text message"
    assert key_fields({"data": {"host": "h1", "used": 97}}).summary == "host=h1, used=97"
