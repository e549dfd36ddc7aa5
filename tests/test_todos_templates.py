"""Templates over event fields: lookups, rendering of missing values, rejected placeholders."""

from __future__ import annotations

import pytest

from broker.errors import InvalidConfig
from broker.templates import compile_template, lookup
from broker.todos.queues import Queue, validate_queue

EVENT = {"specversion": "1.0", "id": "e1", "source": "am/prod", "type": "alert.firing",
         "subject": "db-1", "dedupkey": "fp1", "count": 3, "ok": True,
         "data": {"labels": {"alertname": "DiskFull", "severity": None},
                  "alerts": [{"status": "firing"}], "ratio": 0.5}}


@pytest.mark.parametrize(("name", "value"), [
    ("source", "am/prod"), ("dedupkey", "fp1"), ("data.labels.alertname", "DiskFull"),
    ("data.alerts.0.status", "firing"), ("data.alerts.1.status", None),
    ("data.labels.severity", None), ("data.labels.alertname.x", None), ("missing", None),
])
def test_lookup(name, value):
    assert lookup(EVENT, name) == value


def test_render_substitutes_and_formats_values():
    t = compile_template("{source}/{subject} {count} {ok} {data.ratio} {data.alerts} {{x}}")
    assert t.render(EVENT) == 'am/prod/db-1 3 true 0.5 [{"status":"firing"}] {x}'
    assert compile_template("{data.labels.team} on {subject}").render(EVENT, "-") == "- on db-1"
    assert compile_template("{nope}").render_optional(EVENT) is None
    assert compile_template("P-{nope}").render_optional(EVENT) == "P-"


@pytest.mark.parametrize("text", ["{", "a}", "{Source}", "{data..x}", "{__class__}",
                                  "{source.__init__}", "{}", "{a b}", 42])
def test_bad_templates_are_refused(text):
    with pytest.raises(InvalidConfig):
        compile_template(text)


def test_queue_keys_titles_and_priorities():
    queue = Queue.from_spec(validate_queue({
        "name": "q", "group_key": "{data.labels.team}", "title": "{data.labels.x} {subject}",
        "priority": "{data.labels.alertname}", "priority_map": {"DiskFull": "P2"}}))
    assert queue.key_of(EVENT) == "fp1"  # dedupkey wins
    without = {k: v for k, v in EVENT.items() if k != "dedupkey"}
    assert queue.key_of(without) == "am/prod/db-1"  # an empty key falls back to the default
    assert queue.title_of(EVENT) == "- db-1"
    assert queue.priority_of(EVENT) == "P2"
    assert Queue.unconfigured("x").title_of(EVENT) == "alert.firing on db-1"


def test_remembered_keys_and_titles_render_as_each_event_would():
    """A queue remembers renderings by the values of their attributes: every answer is
    still the template's own, whatever came before (values that are equal keys but
    render apart, a key that falls back to the default, data paths)."""
    queue = Queue.from_spec(validate_queue({
        "name": "q", "group_key": "{team}", "title": "{count} on {subject}"}))
    by_data = Queue.from_spec(validate_queue({"name": "d", "title": "{data.n} {subject}"}))
    events = [{**EVENT, "count": count, "team": team, "subject": subject, "data": {"n": n}}
              for count in (1, True, "1", None) for team in ("a", None, 1)
              for subject in ("s1", "s2") for n in (1, 2)]
    for _ in range(2):  # the second pass answers from what the first remembered
        for event in events:
            plain = {k: v for k, v in event.items() if k != "dedupkey"}
            key = compile_template("{team}").render_optional(plain)
            assert queue.key_of(plain) == (key if key is not None else
                                           compile_template("{source}/{subject}").render(plain))
            assert queue.title_of(plain) == compile_template(
                "{count} on {subject}").render(plain, "-")
            assert by_data.title_of(plain) == compile_template(
                "{data.n} {subject}").render(plain, "-")
