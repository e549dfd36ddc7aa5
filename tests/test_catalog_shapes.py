"""The catalog's pure parts: shape inference and its bounds, drift within a batch, the
sample per commit, and how flushes add up."""

from __future__ import annotations

import random

from broker.bus.log import StoredEvent, canonical
from broker.catalog.model import CatalogEntry, FieldStat, combine
from broker.catalog.shape import paths_of, topmost
from broker.catalog.tracker import CatalogSettings, Tracker

T0 = "2026-11-25T10:00:00.000000Z"


def stored(n: int, data: object, type_: str = "t") -> StoredEvent:
    event = {"specversion": "1.0", "id": str(n), "source": "s", "type": type_, "data": data}
    return StoredEvent(n, T0, canonical(event), (), event)


def test_paths_types_arrays_and_binary():
    paths, full = paths_of({"data": {"a": 1, "b": [{"c": "x"}, {"c": 2}], "d": None,
                                     "e": 1.5}}, 100, 8)
    assert paths == {"data": "object", "data.a": "integer", "data.b": "array",
                     "data.b[]": "object", "data.b[].c": "integer|string",
                     "data.d": "null", "data.e": "number"}
    assert not full
    assert paths_of({"data_base64": "AAE="}, 100, 8) == ({"data": "binary"}, False)
    assert paths_of({}, 100, 8) == ({}, False)


def test_paths_are_bounded_in_number_and_depth():
    deep = {"data": {"a": {"b": {"c": {"d": 1}}}}}
    assert set(paths_of(deep, 100, 2)[0]) == {"data", "data.a", "data.a.b"}
    wide = {"data": {f"k{n}": n for n in range(50)}}
    paths, full = paths_of(wide, 10, 8)
    assert len(paths) == 10 and full


def test_topmost_keeps_only_the_outer_change():
    assert topmost(["data.a", "data.a.b", "data.a.b[]", "data.c[].d", "data.c"]) == \
        ["data.a", "data.c"]


def test_the_shape_learns_from_a_bounded_sample_of_each_commit():
    tracker = Tracker(CatalogSettings(sample_per_commit=4, learn_events=1))
    tracker.observe([stored(n, {"a": n}) for n in range(100)], 1.0)
    entry = tracker.entry("s", "t")
    assert entry is not None and entry.count == 100 and entry.events == 4
    # One odd event among many still shows when the sample meets it: here it is the
    # only event of its commit.
    (drift,) = tracker.observe([stored(200, {"a": "x"})], 2.0)
    assert drift.changes == [{"change": "retyped", "path": "data.a", "from": ["integer"],
                              "to": ["string"]}]


class Unremembering(Tracker):
    """A tracker that learns every event the long way: no last shape to compare with."""

    def _learn(self, live, event):  # type: ignore[no-untyped-def]
        live.shape = None
        live.flat = None
        return super()._learn(live, event)


def test_an_event_shaped_like_the_last_learns_what_the_long_way_learns():
    kinds = [{"a": 1}, {"a": 1, "b": "x"}, {"a": "x"}, {"a": 1, "c": [1, "y", None]},
              {"c": {"d": 1}}, {}, None, {"a": 1, "b": "x", "c": [2], "d": {"e": 1.5}},
              # Objects of scalars: the same keys with other types, or in another order.
              {"a": 1.5, "b": "x"}, {"b": "x", "a": 1}, {"a": True, "b": None}, {"b": 2}]
    for seed in range(40):
        draw = random.Random(seed)
        shapes = list(kinds)
        settings = CatalogSettings(learn_events=draw.choice((1, 3, 20)),
                                   max_fields=draw.choice((2, 4, 200)),
                                   sample_per_commit=draw.choice((2, 10)))
        fast, slow = Tracker(settings), Unremembering(settings)
        n = 0
        for commit in range(30):
            # Runs of one shape, as producers send, and now and then another.
            batch = []
            for _ in range(draw.randint(1, 12)):
                n += 1
                shape = shapes[0] if draw.random() < 0.6 else draw.choice(shapes)
                batch.append(stored(n, shape))
            drifts = fast.observe(batch, float(commit))
            assert [(d.changes, d.cause.seq if d.cause else None) for d in drifts] == \
                [(d.changes, d.cause.seq if d.cause else None)
                 for d in slow.observe(batch, float(commit))], seed
            if draw.random() < 0.1:  # the usual shape changes
                shapes.append(shapes.pop(0))
        assert fast.entries() == slow.entries(), seed


def test_the_bus_own_events_are_not_catalogued():
    event = {"specversion": "1.0", "id": "1", "source": "opsbus/catalog",
             "type": "opsbus.catalog.changed", "data": {}}
    tracker = Tracker(CatalogSettings())
    assert tracker.observe([StoredEvent(1, T0, canonical(event), (), event)], 1.0) == []
    assert len(tracker) == 0


def test_max_entries_bounds_the_catalog():
    tracker = Tracker(CatalogSettings(max_entries=2))
    tracker.observe([stored(n, {}, type_=f"t{n}") for n in range(5)], 1.0)
    assert len(tracker) == 2 and tracker.untracked == 3


def test_flushes_add_up():
    a = CatalogEntry("s", "t", T0, T0, 2, 1, None, 0.0, False, 2,
                     {"data.x": FieldStat(("integer",), 2)})
    b = CatalogEntry("s", "t", T0, T0, 3, 1, 5.0, 0.1, False, 3,
                     {"data.x": FieldStat(("string",), 1), "data.y": FieldStat(("null",), 3)})
    both = combine(a, b, max_fields=10)
    assert both.count == 5 and both.events == 5 and both.gap_s == 5.0
    assert both.fields == {"data.x": FieldStat(("integer", "string"), 3),
                           "data.y": FieldStat(("null",), 3)}


def test_entries_another_process_stored_are_adopted_not_overwritten():
    tracker = Tracker(CatalogSettings())
    tracker.observe([stored(1, {"a": 1})], 1.0)
    mine = tracker.entry("s", "t")
    theirs = CatalogEntry("other", "u", T0, T0, 7, 2, 3.0, 0.5, False, 7,
                          {"data": FieldStat(("object",), 7)})
    stale = CatalogEntry("s", "t", T0, T0, 99, 1, None, 0.0, False, 0, {})
    tracker.adopt([theirs, stale])
    assert tracker.entry("other", "u") == theirs
    assert tracker.entry("s", "t") == mine


def test_a_leading_run_of_one_pair_counts_what_event_by_event_counts(monkeypatch):
    """A commit's first events of one (source, type), then others (a queue's bus
    announcements, another producer, the first producer's other types): the counts,
    shapes and drifts are those of grouping event by event."""
    pairs = [("s", "t"), ("s", "u"), ("p", "t"), ("opsbus/todos", "opsbus.todo.updated")]

    def event(n: int, pair: tuple[str, str], data: object) -> StoredEvent:
        body = {"specversion": "1.0", "id": str(n), "source": pair[0], "type": pair[1],
                "data": data}
        return StoredEvent(n, T0, canonical(body), (), body)

    def commits(seed: int) -> list[list[StoredEvent]]:
        draw = random.Random(seed)
        out, n = [], 0
        for _ in range(20):
            batch: list[StoredEvent] = []
            for _ in range(draw.randint(1, 4)):  # runs of one pair
                pair = draw.choice(pairs)
                for _ in range(draw.randint(1, 15)):
                    n += 1
                    batch.append(event(n, pair, draw.choice(({"a": 1}, {"a": "x"}, {}))))
            out.append(batch)
        return out

    settings = CatalogSettings(learn_events=2, sample_per_commit=3)
    for seed in range(30):
        fast = Tracker(settings)
        fast_drifts = [[(d.source, d.type, d.changes, d.cause and d.cause.seq)
                        for d in fast.observe(batch, float(i))]
                       for i, batch in enumerate(commits(seed))]
        with monkeypatch.context() as patch:
            patch.setattr("broker.catalog.tracker._leading_run", lambda sources, types: 0)
            slow = Tracker(settings)
            slow_drifts = [[(d.source, d.type, d.changes, d.cause and d.cause.seq)
                            for d in slow.observe(batch, float(i))]
                           for i, batch in enumerate(commits(seed))]
        assert fast_drifts == slow_drifts, seed
        assert fast.entries() == slow.entries(), seed
