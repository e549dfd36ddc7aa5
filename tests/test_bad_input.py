"""Hostile input over HTTP: every malformed request gets a 4xx RFC 9457 problem that names
the problem (never a 500), and bad publishes leave the stored log exactly as the good
ones made it."""

from __future__ import annotations

import asyncio
import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.filters import FilterLimits, compile_filter
from broker.filters.expression import clear_cache
from tests.broker_process import AUTH, BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event
from tests.cost import calls

CONFIG = """
[[queues]]
name = "q"
group_key = "{subject}"

[[routes]]
name = "to-q"
filter = { exact = { type = "bad.input.todo" } }
targets = ["queue:q"]

[[subscriptions]]
name = "pull"
type = "pull"
"""

BIG = 2**63  # one past the largest id the store holds
HUGE = 10**23


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("bad-input")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def todo_id(broker: BrokerProcess) -> int:
    """An open todo item to aim item operations at."""
    status, doc = call(broker, "POST", "/v1/events", make_event(
        type="bad.input.todo", subject="item-1"), headers=STRUCTURED)
    assert status == 201, doc
    status, doc = call(broker, "GET", "/v1/todos?queue=q")
    return int(doc["items"][0]["id"])


def call(broker: BrokerProcess, method: str, path: str, body: Any = None, *,
         headers: dict[str, str] | None = None, raw: bytes | None = None
         ) -> tuple[int, dict[str, Any]]:
    """One request; (status, decoded JSON body). Problems are checked to be problems."""
    conn = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data,
                 headers={"Content-Type": "application/json", **AUTH, **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    if resp.status >= 400:
        assert resp.getheader("Content-Type", "").startswith("application/problem+json"), (
            resp.status, payload[:300])
    return resp.status, json.loads(payload) if payload else {}


def assert_problem(status: int, doc: dict[str, Any], expected: int, *words: str) -> None:
    assert status == expected, doc
    assert doc["status"] == expected and doc["detail"], doc
    for word in words:
        assert word in doc["detail"], doc


def nested(levels: int, leaf: Any, key: str = "a") -> Any:
    for _ in range(levels):
        leaf = {key: leaf}
    return leaf


def nested_all(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"exact": {"type": "t"}}
    for _ in range(levels):
        spec = {"all": [spec]}
    return spec


# -- ids and query numbers past 64 bits ------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/v1/events/{BIG}"),
    ("GET", f"/v1/events/{HUGE}"),
    ("GET", f"/v1/todos/{BIG}"),
    ("POST", f"/v1/todos/{HUGE}/claim"),
    ("POST", f"/v1/todos/{BIG}/actions/anything"),
    ("GET", f"/v1/silences/{BIG}"),
    ("DELETE", f"/v1/silences/{HUGE}"),
    ("GET", f"/v1/subscriptions/pull/deliveries/{HUGE}"),
    ("POST", f"/v1/subscriptions/pull/deliveries/{BIG}/retry"),
])
def test_ids_past_64_bits_are_not_found(broker: BrokerProcess, method: str, path: str
                                        ) -> None:
    body = {"operator": "ann"} if method == "POST" else None
    status, doc = call(broker, method, path, body)
    assert_problem(status, doc, 404, "at most 9223372036854775807")


@pytest.mark.parametrize(("path", "words"), [
    (f"/v1/events?after={BIG}", ("after",)),
    (f"/v1/subscriptions/pull/deliveries?after={HUGE}", ("after",)),
    (f"/v1/actions/x/jobs?after={BIG}", ("after",)),
    (f"/v1/stream?after={HUGE}", ("after",)),
    ("/v1/events?since=99999999999d", ("since", "too long")),
    ("/v1/events?since=" + "9" * 400, ("since", "too long")),
    ("/v1/events?since=0001-01-01T00:00:00%2B05:00", ("since",)),
    ("/v1/events?until=9999-12-31T23:59:59-05:00", ("until",)),
])
def test_out_of_range_query_parameters(broker: BrokerProcess, path: str,
                                       words: tuple[str, ...]) -> None:
    status, doc = call(broker, "GET", path)
    assert_problem(status, doc, 400, *words)


def test_stream_last_event_id_past_64_bits(broker: BrokerProcess) -> None:
    status, doc = call(broker, "GET", "/v1/stream", headers={"Last-Event-ID": str(BIG)})
    assert_problem(status, doc, 400, "Last-Event-ID")


# -- durations and times that overflow date arithmetic -----------------------------------

@pytest.mark.parametrize(("body", "words"), [
    ({"duration": 1e308}, ("duration", "too long")),
    ({"duration": HUGE}, ("duration", "too long")),
    ({"duration": "9" * 40 + "d"}, ("duration", "too long")),
    ({"ends_at": "0001-01-01T00:00:00+05:00"}, ("ends_at",)),
    ({"ends_at": "9999-12-31T23:59:59-05:00"}, ("ends_at",)),
])
def test_silence_end_out_of_range(broker: BrokerProcess, body: dict[str, Any],
                                  words: tuple[str, ...]) -> None:
    status, doc = call(broker, "POST", "/v1/silences",
                       {"matcher": {"key": "x*"}, "operator": "ann", **body})
    assert_problem(status, doc, 400, *words)


@pytest.mark.parametrize(("body", "words"), [
    ({"for": 1e308}, ("for", "too long")),
    ({"for": "99999999999999w"}, ("for", "too long")),
    ({"until": "9999-12-31T23:59:59-05:00"}, ("until",)),
])
def test_snooze_end_out_of_range(broker: BrokerProcess, todo_id: int, body: dict[str, Any],
                                 words: tuple[str, ...]) -> None:
    status, doc = call(broker, "POST", f"/v1/todos/{todo_id}/snooze",
                       {"operator": "ann", **body})
    assert_problem(status, doc, 400, *words)


@pytest.mark.parametrize("since", ["9" * 30, "0001-01-01T00:00:00+05:00"])
def test_route_history_since_out_of_range(broker: BrokerProcess, since: str) -> None:
    status, doc = call(broker, "POST", "/v1/routes/test", {
        "route": {"name": "t", "filter": {"sql": "TRUE"}, "targets": ["queue:q"]},
        "history": {"since": since}})
    assert_problem(status, doc, 400, "history.since")


@pytest.mark.parametrize("lease", ["999999999999d", 1e300])
def test_queue_lease_out_of_range(broker: BrokerProcess, lease: Any) -> None:
    status, doc = call(broker, "PUT", "/v1/queues/q2", {"name": "q2", "lease": lease})
    assert_problem(status, doc, 400, "lease", "too long")


# -- nesting past what the filter compiler and the JSON encoder take ---------------------

@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/filters/evaluate", {"filter": nested_all(300), "event": make_event()}),
    ("POST", "/v1/filters/evaluate", {"filter": nested(600, {"exact": {"type": "t"}}, "not"),
                                      "event": make_event()}),
    ("POST", "/v1/routes", {"name": "deep", "filter": nested_all(100),
                            "targets": ["queue:q"]}),
    ("POST", "/v1/routes/test", {"route": {"name": "deep", "filter": nested_all(200),
                                           "targets": ["queue:q"]},
                                 "events": [make_event()]}),
    ("POST", "/v1/silences", {"matcher": {"filter": nested_all(100)}, "duration": "1h",
                              "operator": "ann"}),
])
def test_deeply_nested_filters(broker: BrokerProcess, method: str, path: str,
                               body: dict[str, Any]) -> None:
    status, doc = call(broker, method, path, body)
    # Over a limit is refused everywhere, the tester included (it reports other errors).
    assert_problem(status, doc, 400, "nested too deeply", "filter_max_dialect_depth")


def test_filters_nested_within_the_limit_still_work(broker: BrokerProcess) -> None:
    status, doc = call(broker, "POST", "/v1/filters/evaluate", {
        "filter": nested_all(60), "event": make_event(type="t")})
    assert status == 200 and doc == {"value": True, "error": None, "warnings": []}


@pytest.mark.parametrize(("headers", "body", "words"), [
    (STRUCTURED, make_event(data=nested(240, 1)), ("data",)),
    (BATCH, [make_event(), make_event(data=nested(240, 1))], ("batch entry 1", "data")),
])
def test_event_data_too_deep_to_store(broker: BrokerProcess, headers: dict[str, str],
                                      body: Any, words: tuple[str, ...]) -> None:
    status, doc = call(broker, "POST", "/v1/events", body, headers=headers)
    assert_problem(status, doc, 400, *words)
    assert doc["attribute"] == "data"


def test_event_data_nested_within_the_limit_is_stored(broker: BrokerProcess) -> None:
    event = make_event(data=nested(230, 1))
    status, doc = call(broker, "POST", "/v1/events", event, headers=STRUCTURED)
    assert status == 201, doc
    status, stored = call(broker, "GET", f"/v1/events/{doc['seq']}")
    assert stored["event"]["data"] == event["data"]


def test_reemit_with_data_too_deep(broker: BrokerProcess, todo_id: int) -> None:
    status, doc = call(broker, "POST", f"/v1/todos/{todo_id}/reemit",
                       {"operator": "ann", "data": nested(300, 1)})
    assert_problem(status, doc, 400, "data")


def test_action_body_too_deep_to_store(broker: BrokerProcess) -> None:
    status, doc = call(broker, "PUT", "/v1/actions/deep", {
        "name": "deep", "url": "http://127.0.0.1:9/", "body": nested(300, "x")})
    assert_problem(status, doc, 400, "cannot be stored as JSON")


def test_long_disjunction_parses_in_linear_time() -> None:
    # Over the default limits; given room, it still parses with work linear in the terms
    # (it once rebuilt the OR node for each term: 15 s for 20,000 terms). Work is counted
    # in Python calls, which a busy machine cannot change; four times the terms must cost
    # about four times the calls, where quadratic work costs sixteen.
    roomy = FilterLimits(max_length=10**6, max_nodes=10**6)

    def disjunction(terms: int, value: str) -> str:
        return " OR ".join([f"type = '{value}'"] * terms)

    clear_cache()  # counted cold, whatever compiled before
    compile_filter(disjunction(10, "warm-up"), limits=roomy)
    small, _ = calls(compile_filter, disjunction(2_000, "a"), limits=roomy)
    large, flt = calls(compile_filter, disjunction(8_000, "x"), limits=roomy)
    assert large <= 4.4 * small, (small, large)
    assert flt.matches(make_event(type="x"))
    assert compile_filter(disjunction(20_000, "x"), limits=roomy).matches(make_event(type="x"))


# -- other wrong types and values ---------------------------------------------------------

@pytest.mark.parametrize("auth_type", [["bearer"], {"a": 1}, None, 5])
def test_action_auth_type_of_the_wrong_type(broker: BrokerProcess, auth_type: Any) -> None:
    status, doc = call(broker, "PUT", "/v1/actions/a1", {
        "name": "a1", "url": "http://127.0.0.1:9/", "auth": {"type": auth_type}})
    assert_problem(status, doc, 400, "auth")


@pytest.mark.parametrize("url", ["http://[x/", "http://h:99999/", "http://h:abc/"])
def test_action_url_with_a_broken_host(broker: BrokerProcess, url: str) -> None:
    status, doc = call(broker, "PUT", "/v1/actions/a2", {"name": "a2", "url": url})
    assert_problem(status, doc, 400, "url")


@pytest.mark.parametrize("flt", [None, "", "  ", {}])
def test_empty_silence_filter_does_not_mute_everything(broker: BrokerProcess, flt: Any
                                                       ) -> None:
    status, doc = call(broker, "POST", "/v1/silences", {
        "matcher": {"filter": flt}, "duration": "1h", "operator": "ann"})
    assert_problem(status, doc, 400, "matcher.filter")


JUNK_BODIES = [b"", b"{bad", b"\xff\xfe\x00", b"[1, 2]", b"null", b'"text"',
               b"[" * 5000 + b"]" * 5000]
JUNK_ENDPOINTS = [
    ("POST", "/v1/events", STRUCTURED), ("POST", "/v1/events", BATCH),
    ("POST", "/v1/filters/evaluate", None), ("POST", "/v1/routes", None),
    ("PUT", "/v1/routes/x", None), ("POST", "/v1/routes/test", None),
    ("PUT", "/v1/queues/x", None), ("PUT", "/v1/subscriptions/x", None),
    ("PUT", "/v1/actions/x", None), ("POST", "/v1/silences", None),
    ("POST", "/v1/todos/1/comment", None), ("POST", "/v1/subscriptions/pull/ack", None),
    ("POST", "/v1/subscriptions/pull/receive", None),
]


@pytest.mark.parametrize(("method", "path", "headers"), JUNK_ENDPOINTS)
def test_junk_bodies_are_client_errors(broker: BrokerProcess, method: str, path: str,
                                       headers: dict[str, str] | None) -> None:
    for raw in JUNK_BODIES:
        status, doc = call(broker, method, path, raw=raw, headers=headers)
        if path.endswith("/receive") and raw in (b"", b"null"):
            continue  # an empty body takes the defaults
        assert 400 <= status < 500 and doc["detail"], (raw[:20], status, doc)


# -- bad publishes lose nothing -----------------------------------------------------------

async def test_bad_publishes_leave_exactly_the_good_ones(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Good events interleaved with every kind of bad one (invalid, bad batch entries,
    oversize, too deep, conflicting duplicates), one at a time and all at once: the log
    holds exactly the good ones, in publish order, also after a restart."""
    proc = BrokerProcess(tmp_path / "data", args=[
        "--durability", "normal", "--max-event-bytes", "4096", "--max-batch-events", "20"]
    ).start()
    source = f"tests/durability/{uuid.uuid4()}"
    url = proc.url + "/v1/events"
    n = 0

    def good(**attrs: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        return make_event(source=source, id=f"good-{n}", data={"n": n}, **attrs)

    def bad_requests(stored: dict[str, Any]) -> list[tuple[dict[str, str], bytes]]:
        """Requests that must store nothing; the last one re-publishes `stored` (already
        in the log) with other content: a conflict."""
        deep = make_event(source=source, data=nested(240, 1))
        return [
            (STRUCTURED, json.dumps(make_event(source=source, type=None)).encode()),
            (STRUCTURED, b"{bad json"),
            (STRUCTURED, json.dumps(make_event(source=source, data="x" * 5000)).encode()),
            (STRUCTURED, json.dumps(deep).encode()),
            (BATCH, json.dumps([make_event(source=source), make_event(source=source, id="")]
                               ).encode()),
            (BATCH, json.dumps([make_event(source=source) for _ in range(21)]).encode()),
            (BATCH, json.dumps([make_event(source=source), deep]).encode()),
            (BATCH, b"[]"),
            ({"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "b",
              "ce-source": source}, b"{}"),
            ({"Content-Type": "application/cloudevents+xml"}, b"<e/>"),
            (STRUCTURED, json.dumps({**stored, "data": {"n": "changed"}}).encode()),
        ]

    expected: list[dict[str, Any]] = []
    try:
        async def post(headers: dict[str, str], body: bytes) -> tuple[int, Any]:
            async with http.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

        # One at a time: the stored order is the publish order.
        for _ in range(5):
            first = good()
            assert (await post(STRUCTURED, json.dumps(first).encode()))[0] == 201
            expected.append(first)
            *bad, conflict = bad_requests(first)
            for headers, body in bad:
                status, doc = await post(headers, body)
                assert 400 <= status < 500, (status, doc)
            status, doc = await post(*conflict)
            assert status == 409 and doc["seq"], doc
            batch = [good(), good()]
            status, doc = await post(BATCH, json.dumps(batch).encode())
            assert status == 200 and [d["duplicate"] for d in doc] == [False, False]
            expected.extend(batch)

        # All at once, so bad work shares group commits with good work.
        concurrent_good = [good() for _ in range(20)]
        requests = [(STRUCTURED, json.dumps(e).encode()) for e in concurrent_good]
        requests += bad_requests(expected[0]) * 3
        answers = await asyncio.gather(*(post(h, b) for h, b in requests))
        assert all(status == 201 for status, _ in answers[:20])
        assert all(400 <= status < 500 for status, _ in answers[20:])

        def check(stored: list[dict[str, Any]]) -> None:
            events = [e["event"] for e in stored]
            ordered = events[:len(expected)]
            assert [e["id"] for e in ordered] == [e["id"] for e in expected]
            assert [e["data"] for e in ordered] == [e["data"] for e in expected]
            rest = sorted(e["id"] for e in events[len(expected):])
            assert rest == sorted(e["id"] for e in concurrent_good)

        async def stored() -> list[dict[str, Any]]:
            async with http.get(proc.url + "/v1/events", params={
                    "source": source, "limit": "1000"}) as resp:
                return list((await resp.json())["events"])

        check(await stored())
        proc.restart()
        check(await stored())
    finally:
        proc.stop()
