"""Compile-time warnings (filters that can never match) and free-text search."""

from __future__ import annotations

from typing import Any

import pytest

from broker.errors import InvalidFilter
from broker.filters import MATCH_ALL, all_of, compile_filter, compile_search

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "shop/Orders-API",
    "type": "order.payment.failed",
    "subject": "order-4711",
    "paged": True,
    "data": {"reason": "Card DECLINED", "amount": 42.5, "lines": [{"sku": "disk-full-kit"}],
             "retry": False},
}

# (filter, the warning codes compiling it reports, in order)
WARNINGS: list[tuple[Any, list[str]]] = [
    ("NOSUCHFN(type) = 1", ["unknownFunction"]),
    ("type = 'x' OR nosuchfn(type)", ["unknownFunction"]),
    ("SUBSTRING(type) = 'x'", ["unknownFunction"]),
    ("ABS(1, 2) > 0 AND NOPE()", ["unknownFunction", "unknownFunction"]),
    ("orders", ["bareName"]),
    ("data.reason", ["bareName"]),
    ("LENGTH(type)", ["notBoolean"]),
    ("'orders'", ["notBoolean"]),
    ("1 = 2", ["neverMatches"]),
    ("FALSE", ["neverMatches"]),
    ("1 / 0 = 0", ["neverMatches"]),
    ("NOT type = 'x'", ["notPrecedence"]),
    ({"any": [{"sql": "type = 'a'"}, {"not": {"sql": "FOO(1)"}}]}, ["unknownFunction"]),
    # Nothing to say about these:
    ("type = 'x'", []),
    ("paged", ["bareName"]),  # a Boolean extension alone is a fine filter, but said
    ("TRUE", []),
    ("NOT (type = 'x')", []),
    ("EXISTS subject", []),
    ("INT(data.count) > 2", []),
    ({"exact": {"type": "x"}}, []),
]


@pytest.mark.parametrize(("spec", "codes"), WARNINGS)
def test_compiling_reports_what_makes_a_filter_never_match(spec: Any, codes: list[str]) -> None:
    assert [w.code for w in compile_filter(spec).warnings] == codes


def test_a_warning_says_where_it_is() -> None:
    spec = {"any": [{"sql": "type = 'a'"}, {"not": {"sql": "FOO(1) = 2"}}]}
    (warning,) = compile_filter(spec).warnings
    assert warning.to_dict() == {
        "code": "unknownFunction",
        "message": "FOO is not a CESQL function; evaluating it is always a missingFunction"
                   " error",
        "position": {"line": 1, "column": 1},
        "where": "filter.any[1].not.sql",
    }
    assert "takes 2 or 3 argument(s), not 1" in compile_filter("SUBSTRING(type) = ''"
                                                                ).warnings[0].message


@pytest.mark.parametrize("spec", ["NOSUCHFN(type) = 1", "LENGTH(type)", "1 = 2",
                                  {"all": [{"exact": {"type": "t"}}, {"sql": "FALSE"}]}])
def test_strict_refuses_a_filter_that_cannot_work(spec: Any) -> None:
    with pytest.raises(InvalidFilter) as caught:
        compile_filter(spec, strict=True)
    assert caught.value.extra["code"] in ("unknownFunction", "notBoolean", "neverMatches")


@pytest.mark.parametrize("spec", ["orders", "NOT type = 'x'", "type = 'x'"])
def test_strict_keeps_a_filter_that_only_looks_odd(spec: str) -> None:
    compile_filter(spec, strict=True)


# -- free-text search ---------------------------------------------------------------------

SEARCHES: list[tuple[str, bool]] = [
    ("orders", True),  # in source, ignoring case
    ("ORDER-4711", True),  # subject
    ("payment", True),  # type
    ("declined", True),  # a data value
    ("reason", True),  # a data key
    ("42.5", True),  # a number in data
    ("disk-full-kit", True),  # inside an array
    ('"card declined"', True),  # a phrase
    ('"declined card"', False),
    ("orders declined", True),  # every word, anywhere
    ("orders refunded", False),
    ("e-1", False),  # the id is not searched
    ("false", True),  # a Boolean in data
    ('"api order"', False),  # a phrase does not span two fields
]


@pytest.mark.parametrize(("words", "expected"), SEARCHES)
def test_search_matches_every_word_in_type_source_subject_or_data(words: str, expected: bool
                                                                  ) -> None:
    assert compile_search(words).matches(EVENT) is expected
    assert compile_filter({"search": words}).matches(EVENT) is expected


def test_search_in_text_data_and_odd_events() -> None:
    flt = compile_search("timeout")
    assert flt.matches({"type": "t", "data": "upstream TIMEOUT after 3s"}) is True
    assert flt.matches({"type": "t", "data_base64": "dGltZW91dA=="}) is False
    assert flt.matches({"type": 5, "data": None}) is False
    assert flt.matches("not an event") is False  # type: ignore[arg-type]


@pytest.mark.parametrize("words", ["", "   ", None])
def test_a_blank_search_matches_everything(words: str | None) -> None:
    assert compile_search(words) is MATCH_ALL


@pytest.mark.parametrize("spec", [{"search": ""}, {"search": 5}, {"search": " ".join(
    f"w{i}" for i in range(33))}])
def test_a_bad_search_is_refused(spec: Any) -> None:
    with pytest.raises(InvalidFilter):
        compile_filter(spec)


def test_search_combines_with_a_filter() -> None:
    both = all_of(compile_filter("type LIKE 'order.%'"), compile_search("declined"))
    assert both.matches(EVENT) is True
    assert both.matches({**EVENT, "type": "refund.done"}) is False
    assert both.spec == {"all": [{"sql": "type LIKE 'order.%'"}, {"search": "declined"}]}
    assert compile_filter(both.spec).matches(EVENT) is True
