"""Subscriptions API filter dialects, their validation, and the evaluate endpoint's domain call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.errors import BadRequest, InvalidFilter
from broker.filters import MATCH_ALL, Filter, compile_filter, evaluate_request

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "https://ci.example.com/pipelines",
    "type": "dev.cdevents.pipelinerun.finished",
    "subject": "deploy-api",
    "attempt": 3,
    "canary": True,
    "data": {"outcome": "failure", "stage": {"name": "prod", "number": 4}, "rate": 0.25},
}


def matches(spec: Any, event: dict[str, Any] | None = None) -> bool:
    return compile_filter(spec).matches(EVENT if event is None else event)


# -- string dialects ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"exact": {"subject": "deploy-api"}}, True),
        ({"exact": {"subject": "deploy"}}, False),
        ({"exact": {"subject": "DEPLOY-API"}}, False),  # case-sensitive
        ({"prefix": {"type": "dev.cdevents."}}, True),
        ({"prefix": {"type": "cdevents"}}, False),
        ({"suffix": {"source": "/pipelines"}}, True),
        ({"suffix": {"source": "/pipeline"}}, False),
        ({"exact": {"absent": "x"}}, False),
        ({"exact": {"attempt": "3"}}, True),  # integers compare as their string
        ({"prefix": {"canary": "tr"}}, True),  # booleans as true/false
        ({"exact": {"subject": "deploy-api", "attempt": "3"}}, True),  # every entry
        ({"exact": {"subject": "deploy-api", "attempt": "4"}}, False),
    ],
)
def test_string_dialects(spec: dict[str, Any], expected: bool) -> None:
    assert matches(spec) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"exact": {"data.outcome": "failure"}}, True),
        ({"exact": {"data.stage.name": "prod"}}, True),
        ({"exact": {"data.stage.number": "4"}}, True),
        ({"exact": {"data.rate": "0.25"}}, True),
        ({"prefix": {"data.stage.name": "pr"}}, True),
        ({"suffix": {"data.outcome": "ure"}}, True),
        ({"exact": {"data.stage": '{"name":"prod","number":4}'}}, True),
        ({"exact": {"data.missing": "x"}}, False),
        ({"exact": {"data.outcome.deeper": "x"}}, False),
    ],
)
def test_string_dialects_on_data_paths(spec: dict[str, Any], expected: bool) -> None:
    assert matches(spec) is expected


def test_data_paths_without_json_data_do_not_match() -> None:
    assert matches({"exact": {"data.outcome": "failure"}}, {"data_base64": "eA=="}) is False


# -- composite dialects --------------------------------------------------------------------


def test_all_any_not() -> None:
    prefix = {"prefix": {"type": "dev.cdevents."}}
    wrong = {"exact": {"subject": "nope"}}
    assert matches({"all": [prefix, {"exact": {"data.outcome": "failure"}}]}) is True
    assert matches({"all": [prefix, wrong]}) is False
    assert matches({"any": [wrong, prefix]}) is True
    assert matches({"any": [wrong, wrong]}) is False
    assert matches({"not": wrong}) is True
    assert matches({"not": {"not": prefix}}) is True
    assert matches({"all": [{"any": [wrong, {"not": wrong}]}, prefix]}) is True


def test_sql_dialect_and_plain_strings() -> None:
    assert matches({"sql": "attempt > 2 AND canary"}) is True
    assert matches("data.stage.number = 4 AND subject LIKE 'deploy-%'") is True
    assert matches({"sql": "attempt"}) is False  # not a Boolean
    assert matches({"sql": "absent = 'x'"}) is False  # an error never passes
    assert matches({"not": {"sql": "absent = 'x'"}}) is True  # not(false)


@pytest.mark.parametrize("spec", [None, {}, "", "   "])
def test_match_all(spec: Any) -> None:
    compiled = compile_filter(spec)
    assert compiled is MATCH_ALL
    assert compiled.matches(EVENT) and compiled.matches({})
    assert compiled.spec == {}


# -- normalization -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"exact": {"type": "x", "data.a.b": "y"}},
        {"all": [{"prefix": {"source": "https://"}}, {"not": {"sql": "attempt > 5"}}]},
        {"any": [{"suffix": {"subject": "-api"}}]},
    ],
)
def test_spec_round_trips_as_json(spec: dict[str, Any]) -> None:
    compiled = compile_filter(spec)
    assert compiled.spec == spec
    again = compile_filter(json.loads(json.dumps(compiled.spec)))
    assert again.spec == compiled.spec
    assert again.matches(EVENT) == compiled.matches(EVENT)


def test_string_spec_normalizes_to_sql() -> None:
    assert compile_filter("subject = 'x'").spec == {"sql": "subject = 'x'"}


def test_spec_is_a_copy() -> None:
    original = {"all": [{"exact": {"type": "x"}}]}
    compiled = compile_filter(original)
    original["all"].append({"exact": {"type": "y"}})
    assert compiled.spec == {"all": [{"exact": {"type": "x"}}]}


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"regex": {"type": ".*"}}, "unknown filter dialect 'regex'"),
        ({"exact": {"type": "x"}, "prefix": {"type": "y"}}, "exactly one dialect key"),
        ([{"exact": {"type": "x"}}], "must be a JSON object"),
        (42, "must be a JSON object"),
        ({"all": []}, "non-empty array"),
        ({"any": []}, "non-empty array"),
        ({"all": {"exact": {"type": "x"}}}, "non-empty array"),
        ({"all": [{"exact": {"type": "x"}}, {}]}, "filter.all[1]"),
        ({"not": [{"exact": {"type": "x"}}]}, "filter.not"),
        ({"not": None}, "filter.not"),
        ({"exact": {}}, "non-empty object"),
        ({"exact": "type"}, "non-empty object"),
        ({"exact": {"type": 1}}, "non-empty string"),
        ({"exact": {"type": ""}}, "non-empty string"),
        ({"exact": {"": "x"}}, "not an attribute name"),
        ({"exact": {"Type": "x"}}, "not an attribute name"),
        ({"prefix": {"my-ext": "x"}}, "not an attribute name"),
        ({"exact": {"data": "x"}}, "the payload"),
        ({"exact": {"data.": "x"}}, "not an attribute name"),
        ({"sql": ""}, "non-empty CESQL"),
        ({"sql": 5}, "non-empty CESQL"),
        ({"any": [{"sql": "subject ="}]}, "filter.any[0].sql"),
    ],
)
def test_invalid_filters_name_the_problem(spec: Any, fragment: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        compile_filter(spec)
    assert fragment in caught.value.detail


def test_sql_parse_error_in_a_filter_keeps_its_position() -> None:
    with pytest.raises(InvalidFilter) as caught:
        compile_filter({"all": [{"sql": "subject = 'x' AND\n  )"}]})
    assert caught.value.extra["position"] == {"line": 2, "column": 3}


# -- robustness -----------------------------------------------------------------------------


@pytest.mark.parametrize("event", [None, [], "text", {"subject": ["a"]}, {"data": [1, 2]}])
def test_matches_never_raises(event: Any) -> None:
    for spec in (
        {"exact": {"subject": "a"}},
        {"prefix": {"data.x": "a"}},
        {"sql": "subject = 'a'"},
        {"any": [{"not": {"suffix": {"type": "x"}}}]},
    ):
        compiled = compile_filter(spec)
        assert compiled.matches(event) in (True, False)
        assert compiled.evaluate(event)[0] in (True, False)


def test_filter_evaluate_reports_the_first_sql_error() -> None:
    compiled = compile_filter({"any": [{"exact": {"subject": "x"}}, {"sql": "absent = 1"}]})
    result, error = compiled.evaluate(EVENT)
    assert result is False
    assert error is not None and error.kind == "missingAttribute"
    assert isinstance(compiled, Filter)


# -- evaluate_request ----------------------------------------------------------------------


def test_evaluate_request_expression_value() -> None:
    body = {"expression": "attempt * 2", "event": EVENT}
    answer = evaluate_request(body)
    assert (answer["value"], answer["error"]) == (6, None)
    # An Integer is a value, not a condition: said in case it is meant as a filter.
    assert [w["code"] for w in answer["warnings"]] == ["notBoolean"]


def test_evaluate_request_expression_error() -> None:
    answer = evaluate_request({"expression": "attempt / 0", "event": EVENT})
    assert answer["value"] == 0
    assert answer["error"] == {
        "kind": "math",
        "message": "division by zero",
        "position": {"line": 1, "column": 9},
    }


def test_evaluate_request_parse_error_is_answered_not_raised() -> None:
    answer = evaluate_request({"expression": "attempt >", "event": EVENT})
    assert answer["value"] is False
    assert answer["error"]["kind"] == "parse"
    assert answer["error"]["position"] == {"line": 1, "column": 10}


def test_evaluate_request_filter() -> None:
    body = {"filter": {"prefix": {"type": "dev."}}, "event": EVENT}
    assert evaluate_request(body) == {"value": True, "error": None, "warnings": []}
    bad = evaluate_request({"filter": {"nope": {}}, "event": EVENT})
    assert bad["value"] is False and bad["error"]["kind"] == "parse"
    assert bad["error"]["position"] is None
    assert evaluate_request({"filter": None, "event": EVENT})["value"] is True


def test_evaluate_request_answers_are_json() -> None:
    for body in (
        {"expression": "data.stage", "event": EVENT},
        {"filter": "absent", "event": EVENT},
        {"expression": "'", "event": EVENT},
    ):
        json.dumps(evaluate_request(body))


@pytest.mark.parametrize(
    "body",
    [
        {"event": EVENT},
        {"expression": "TRUE", "filter": {}, "event": EVENT},
        {"expression": "TRUE"},
        {"expression": "TRUE", "event": "x"},
        {"expression": 5, "event": EVENT},
        [],
    ],
)
def test_evaluate_request_rejects_bad_bodies(body: Any) -> None:
    with pytest.raises(BadRequest):
        evaluate_request(body)
