"""The route index: guards derived from filters, and index matching equal to evaluating
every route."""

from __future__ import annotations

import random
import tomllib

import pytest

from broker.eventfiles import read_events
from broker.routing import (
    Guard,
    Router,
    admits,
    compile_route,
    guard_of,
    names_bus_events,
    validate_route,
)
from tests.broker_process import ROOT


@pytest.mark.parametrize(("spec", "guard"), [
    ({"exact": {"type": "a.b"}}, Guard("type", exact=frozenset({"a.b"}))),
    ({"prefix": {"subject": "db-", "type": "x."}}, Guard("type", prefixes=frozenset({"x."}))),
    ({"suffix": {"type": ".b"}}, None),
    ({"not": {"exact": {"type": "a"}}}, None),
    ({"all": [{"prefix": {"source": "ci/"}}, {"exact": {"type": "t"}}]},
     Guard("type", exact=frozenset({"t"}))),
    ({"any": [{"exact": {"type": "a"}}, {"prefix": {"type": "b."}}]},
     Guard("type", frozenset({"a"}), frozenset({"b."}))),
    ({"any": [{"exact": {"type": "a"}}, {"exact": {"source": "b"}}]}, None),
    ({"sql": "type LIKE 'svc.%' AND data.x = 1"}, Guard("type", prefixes=frozenset({"svc."}))),
    ({"sql": "TYPE IN ('a', 'b') OR type = 'c'"}, Guard("type", exact=frozenset("abc"))),
    ({"sql": "'x' = source"}, Guard("source", exact=frozenset({"x"}))),
    ({"sql": "type LIKE 'a_b%'"}, Guard("type", prefixes=frozenset({"a"}))),
    ({"sql": "type LIKE 'exact'"}, Guard("type", exact=frozenset({"exact"}))),
    ({"sql": "type LIKE '%x'"}, None),
    ({"sql": "type NOT LIKE 'a%'"}, None),
    ({"sql": "type = 'a' XOR source = 'b'"}, None),
    ({"sql": "type = 'a' OR data.n = 1"}, None),
    ({"sql": "NOT (type = 'a')"}, None),
    ({"sql": "type IN ('a', 1)"}, None),
    ({}, None),
])
def test_guards(spec, guard):
    assert guard_of(compile_route(validate_route({"name": "r", "filter": spec,
                                                  "targets": ["plugin:p"]})).filter.spec) == guard


def sample_routes() -> list[dict]:
    with open(ROOT / "sample_events" / "opsbus.toml", "rb") as fh:
        routes = tomllib.load(fh)["routes"]
    extra = [
        {"filter": {"sql": "type LIKE 'prometheus.alert.%' OR source = 'k8s/prod-eu1'"}},
        {"filter": {"sql": "subject LIKE 'orders%' AND type IN ('k8s.pod.crashloop')"}},
        {"filter": {"any": [{"exact": {"subject": "OPS-4812"}},
                            {"prefix": {"subject": "preview-"}}]}},
        {"filter": {"suffix": {"source": "-primary"}}},
        {"filter": {"prefix": {"source": "k8s/"}}},
        {"filter": {"exact": {"subject": "OPS-4812"}}},
        {"filter": {"sql": "type LIKE 'ci.deploy._ailed'"}},
        {"filter": {}},
    ]
    routes += [{"name": f"extra-{i}", "targets": ["plugin:p"], **r} for i, r in
               enumerate(extra)]
    return [validate_route(r) for r in routes]


@pytest.mark.parametrize("memo_size", [4096, 3])
def test_index_matches_exactly_what_evaluating_every_route_matches(monkeypatch, memo_size):
    # The index remembers candidates per guard-attribute values (a small memo is
    # forgotten often): a second pass over the same events answers from it.
    monkeypatch.setattr("broker.routing.index.MEMO_SIZE", memo_size)
    routes = tuple(compile_route(r) for r in sample_routes())
    router = Router()
    router.routes = routes
    events = [e.event for e in read_events([ROOT / "sample_events"])]
    rng = random.Random(7)
    mutated = []
    for event in events:
        for attribute in ("type", "source", "subject"):
            if isinstance(event.get(attribute), str):
                value = event[attribute]
                cut = rng.randrange(len(value) + 1)
                mutated.append({**event, attribute: value[:cut]})
                mutated.append({**event, attribute: value + "x"})
        mutated.append({k: v for k, v in event.items() if k != "subject"})
    for event in (events + mutated) * 2:
        assert router.match(event) == [r for r in routes
                                       if admits(r, event) and r.filter.matches(event)], event


@pytest.mark.parametrize(("spec", "named"), [
    ({}, False),
    ({"prefix": {"type": "ops"}}, False),
    ({"suffix": {"type": ".opened"}}, False),
    ({"not": {"prefix": {"type": "x."}}}, False),
    ({"sql": "type <> 'x'"}, False),
    ({"prefix": {"type": "opsbus.todo."}}, True),
    ({"exact": {"type": "opsbus.delivery.deadlettered"}}, True),
    ({"exact": {"source": "opsbus/delivery"}}, True),
    ({"sql": "type LIKE 'opsbus.%' AND subject = 'x'"}, True),
    ({"sql": "source = 'opsbus/todos'"}, True),
    ({"any": [{"exact": {"type": "app.x"}}, {"prefix": {"type": "opsbus."}}]}, True),
    ({"all": [{"exact": {"subject": "db"}}, {"prefix": {"type": "opsbus."}}]}, True),
])
def test_the_bus_own_events_reach_only_routes_that_name_them(spec, named):
    route = compile_route(validate_route({"name": "r", "filter": spec,
                                          "targets": ["plugin:p"]}))
    assert names_bus_events(route.filter.spec) is named
    own = {"specversion": "1.0", "id": "1", "type": "opsbus.todo.opened",
           "source": "opsbus/todos", "subject": "db"}
    router = Router()
    router.routes = (route,)
    hit = route.filter.matches(own)
    assert router.match(own) == ([route] if named and hit else [])
    assert admits(route, {**own, "type": "app.x", "source": "app"})
