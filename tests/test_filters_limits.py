"""Filter bounds: each limit refuses a filter over it, naming the setting, and stops early."""

from __future__ import annotations

from typing import Any

import pytest

from broker.errors import InvalidConfig, InvalidFilter
from broker.filters import (
    DEFAULT_LIMITS,
    FilterLimits,
    FilterTooLarge,
    compile_filter,
    compile_sql,
)
from broker.filters.expression import clear_cache
from broker.filters.functions import MAX_STRING
from broker.settings import resolve_settings
from tests.cost import calls

# The hostile filters that froze the broker: an 80,000-term OR of about 1 MB, and an IN
# set of 100,000 elements.
HUGE_OR = " OR ".join(f"subject = 'host-{i:05d}'" for i in range(80_000))
HUGE_IN = "subject IN (" + ", ".join(f"'host-{i:06d}'" for i in range(100_000)) + ")"

SMALL = FilterLimits(max_length=200, max_nodes=20, max_depth=4, max_in_items=3,
                     max_dialect_depth=2)

# (filter, the setting it is over under SMALL)
OVER_SMALL: list[tuple[Any, str]] = [
    ("type = '" + "x" * 200 + "'", "filter_max_length"),
    (" OR ".join(["a = 1"] * 7), "filter_max_nodes"),
    ("((((a))))", "filter_max_depth"),
    ("NOT NOT NOT NOT a", "filter_max_depth"),
    ("a + 1 + 1 + 1 + 1", "filter_max_depth"),
    ("a IN (1, 2, 3, 4)", "filter_max_in_items"),
    ({"all": [{"all": [{"all": [{"exact": {"type": "t"}}]}]}]}, "filter_max_dialect_depth"),
    ({"any": [{"sql": "a = 1 OR b = 2 OR c = 3"}] * 3}, "filter_max_nodes"),
    ({"any": [{"exact": {"type": "x" * 60}}] * 4}, "filter_max_length"),
    ({"search": "w" * 201}, "filter_max_length"),
]


@pytest.mark.parametrize(("spec", "setting"), OVER_SMALL)
def test_a_filter_over_a_limit_names_the_setting(spec: Any, setting: str) -> None:
    with pytest.raises(FilterTooLarge) as caught:
        compile_filter(spec, limits=SMALL)
    assert caught.value.extra["setting"] == setting
    assert setting in caught.value.detail
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "spec",
    [
        "type = '" + "x" * 150 + "'",
        " OR ".join(["a = 1"] * 6),
        "(((a)))",
        "a IN (1, 2, 3)",
        {"all": [{"all": [{"exact": {"type": "t"}}]}]},
    ],
)
def test_a_filter_at_the_limits_compiles(spec: Any) -> None:
    compile_filter(spec, limits=SMALL)


def test_limits_stop_the_parser_early() -> None:
    # Work is counted in Python calls (a busy machine cannot change it): a filter twice as
    # long costs the same, so the parser stopped where the limit is, not at the end.
    # Named limits and no cached compiles: counts that do not depend on earlier tests.
    clear_cache()
    for text, setting in ((HUGE_OR, "filter_max_length"), (HUGE_IN, "filter_max_length")):
        cost, caught = calls(compile_filter, text, limits=DEFAULT_LIMITS)
        assert isinstance(caught, FilterTooLarge) and caught.extra["setting"] == setting
        doubled, _ = calls(compile_filter, text + " OR " + text, limits=DEFAULT_LIMITS)
        assert cost == doubled and cost < 100, (cost, doubled)  # refused before reading it
    # With room for the text, the node and IN limits stop the parser at the first element
    # over them: the cost is that of the limit, not of the filter.
    roomy = FilterLimits(max_length=10**7)
    for text, setting, limits in (
        (HUGE_OR, "filter_max_nodes", roomy),
        (HUGE_IN, "filter_max_nodes", roomy),
        (HUGE_IN, "filter_max_in_items", FilterLimits(max_length=10**7, max_nodes=10**6)),
    ):
        cost, caught = calls(compile_filter, text, limits=limits)
        assert isinstance(caught, FilterTooLarge) and caught.extra["setting"] == setting
        assert caught.extra["position"]["line"] == 1
        longer = text + " OR " + text if text is HUGE_OR else text.replace(")", ", 'x')")
        longer_cost = calls(compile_filter, longer, limits=limits)[0]
        assert longer_cost <= cost * 1.01, (setting, cost, longer_cost)


def test_a_filter_just_under_the_limits_compiles_and_evaluates_within_a_bound() -> None:
    limits = DEFAULT_LIMITS
    # As many terms as the node limit takes (3 nodes each, 1 per OR chain).
    terms = (limits.max_nodes - 1) // 3
    text = " OR ".join(f"subject = 'h{i}'" for i in range(terms))
    assert len(text) <= limits.max_length
    # Bounded work, counted in Python calls: compiling costs a few calls per node, and
    # evaluating visits each node at most a few times.
    clear_cache()
    compiled, flt = calls(compile_filter, text, limits=limits)
    event = {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": "none"}
    evaluated, matched = calls(flt.matches, event)
    assert matched is False
    assert compiled < 60 * limits.max_nodes and evaluated < 10 * limits.max_nodes, (
        compiled, evaluated)
    in_set = "subject IN (" + ", ".join(f"'h{i}'" for i in range(limits.max_in_items)) + ")"
    assert compile_filter(in_set).matches({**event, "subject": "h999"}) is True


def test_the_compile_cache_still_applies_tighter_limits() -> None:
    text = " OR ".join(["a = 1"] * 10)
    compile_sql(text, limits=DEFAULT_LIMITS)  # cached now
    with pytest.raises(FilterTooLarge):
        compile_sql(text, limits=SMALL)


@pytest.mark.parametrize("depth", [DEFAULT_LIMITS.max_depth + 1, 1000, 100_000])
def test_deep_nesting_is_a_filter_error_never_a_recursion_error(depth: int) -> None:
    for text in ("(" * depth + "1" + ")" * depth, "ABS(" * depth + "1" + ")" * depth,
                 "NOT " * depth + "TRUE", "1 IN (" * depth + "1" + ")" * depth):
        with pytest.raises(InvalidFilter) as caught:
            compile_sql(text, limits=FilterLimits(max_length=10**7))
        assert "nested too deeply" in caught.value.detail or "syntax nodes" in caught.value.detail


def test_the_deepest_allowed_nesting_compiles_and_evaluates_from_a_deep_stack() -> None:
    deepest = FilterLimits(max_depth=64, max_dialect_depth=64)
    text = "(" * 63 + "a = 1" + ")" * 63
    spec: Any = {"sql": text}
    for _ in range(64):
        spec = {"not": spec}

    def nested(levels: int) -> bool:  # leaves the caller a stack already 200 frames deep
        if levels:
            return nested(levels - 1)
        return compile_filter(spec, limits=deepest).matches({"a": 1})

    assert nested(200) is True  # an even number of NOTs around a true expression


def test_limits_are_settings_with_documented_ceilings() -> None:
    settings = resolve_settings({}, {})
    assert settings.filter_max_nodes == DEFAULT_LIMITS.max_nodes
    assert resolve_settings({}, {"OPSBUS_FILTER_MAX_IN_ITEMS": "50"}).filter_max_in_items == 50
    for name, value in (("filter_max_depth", 65), ("filter_max_dialect_depth", 65),
                        ("filter_max_nodes", 0)):
        with pytest.raises(InvalidConfig) as caught:
            resolve_settings({name: value}, {})
        assert name in caught.value.detail


def test_concatenation_is_bounded() -> None:
    # Nested CONCATs would double a string at each level: CONCAT stops at MAX_STRING.
    event = {"x": "y" * (MAX_STRING // 2 + 1)}
    value, error = compile_sql("LENGTH(CONCAT(x, x))").evaluate(event)
    assert error is not None and error.kind == "functionEvaluation"
    assert str(MAX_STRING) in error.message and value == 0
    assert compile_sql("LENGTH(CONCAT(x, 'a'))").evaluate(event) == (MAX_STRING // 2 + 2, None)


def test_parentheses_do_not_count_as_nodes() -> None:
    # The lexer's early stop counts names, literals and operators, not punctuation.
    text = " OR ".join(["((((a))))"] * (DEFAULT_LIMITS.max_nodes - 1))
    assert compile_filter(text, limits=FilterLimits(max_length=10**6)).matches({"a": True})
