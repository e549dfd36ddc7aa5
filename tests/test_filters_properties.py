"""Property tests: the parser and evaluator never fail with anything but InvalidFilter."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import InvalidFilter
from broker.filters import (
    ERROR_KINDS,
    Expression,
    Filter,
    FilterLimits,
    compile_filter,
    compile_sql,
)
from broker.filters.like import compile_like
from broker.filters.parser import parse
from tests import cesql_reference as reference

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
NAMES = ["id", "source", "type", "subject", "sequence", "flag", "missing", "data", "time"]
FUNCTIONS = [
    "ABS", "LENGTH", "CONCAT", "CONCAT_WS", "LOWER", "UPPER", "TRIM", "LEFT", "RIGHT",
    "SUBSTRING", "INT", "BOOL", "STRING", "IS_INT", "IS_BOOL", "NOPE",
]  # fmt: skip

# -- events ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0", "labels"]), inner, max_size=3)
    ),
    max_leaves=8,
)
events = st.dictionaries(st.sampled_from([*NAMES, "a", "b", "data_base64"]), json_values)

# -- expressions, generated from the grammar ------------------------------------------------


def _string_literal(text: str, quote: str) -> str:
    escaped = text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return f"{quote}{escaped}{quote}"


def _random_case(word: str, flips: list[bool]) -> str:
    flips = [*flips, *([False] * len(word))]
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(word, flips, strict=False))


string_literals = st.builds(
    _string_literal, st.text(alphabet="ab%_\\'\" \n\u00e9", max_size=6), st.sampled_from("'\"")
)
leaves = st.one_of(
    st.integers(min_value=INT_MIN, max_value=INT_MAX).map(str),
    string_literals,
    st.builds(_random_case, st.sampled_from(["true", "false"]), st.lists(st.booleans())),
    st.sampled_from(NAMES),
    st.sampled_from(["data.a", "data.labels.a", "data.0", "data.b.0.a"]),
    st.sampled_from(NAMES).map(lambda name: f"EXISTS {name}"),
)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary_ops = st.sampled_from(
        ["+", "-", "*", "/", "%", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "OR", "XOR"]
    )
    return st.one_of(
        st.builds(lambda op, x: f"{op} {x}", st.sampled_from(["NOT", "-"]), inner),
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, binary_ops, inner),
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, binary_ops, inner),
        st.builds(
            lambda x, neg, pattern: f"{x} {neg}LIKE {pattern}",
            inner,
            st.sampled_from(["", "NOT "]),
            string_literals,
        ),
        st.builds(
            lambda x, neg, items: f"{x} {neg}IN ({', '.join(items)})",
            inner,
            st.sampled_from(["", "NOT "]),
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.builds(
            lambda name, args: f"{name}({', '.join(args)})",
            st.sampled_from(FUNCTIONS),
            st.lists(inner, max_size=3),
        ),
        inner.map(lambda x: f"({x})"),
    )


expressions = st.recursive(leaves, _compound, max_leaves=12)


# The generator only writes valid CESQL, now and then deeper than the default limits.
ROOMY = FilterLimits(max_depth=64)


def valid(text: str) -> Expression:
    """A generated expression, compiled with room for its depth."""
    return compile_sql(text, limits=ROOMY)


def _check_result(result: object, error: Any) -> None:
    assert type(result) in (bool, int, str)
    if type(result) is int:
        assert INT_MIN <= result <= INT_MAX  # type: ignore[operator]
    if error is not None:
        assert error.kind in ERROR_KINDS
        assert isinstance(error.message, str)


# -- properties -----------------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=60))
def test_parser_only_raises_invalid_filter_on_any_text(text: str) -> None:
    try:
        compile_sql(text)
    except InvalidFilter as exc:
        assert set(exc.extra.get("position") or {"line": 1, "column": 1}) == {"line", "column"}


SOUP = [
    "(", ")", "'", '"', "\\", "%", ",", "-", "+", "NOT", "IN", "LIKE", "AND", "x", "1", "ABS",
    "data.", "data.a", " ", "EXISTS", "2147483648", "\n", "=", "<>", "!",
]  # fmt: skip


@SETTINGS
@given(st.lists(st.sampled_from(SOUP), max_size=25))
def test_parser_only_raises_invalid_filter_on_token_soup(parts: list[str]) -> None:
    text = " ".join(parts) if len(parts) % 2 else "".join(parts)
    try:
        expression = compile_sql(text)
    except InvalidFilter:
        return
    _check_result(*expression.evaluate({"x": "1", "data": {"a": 2}}))


@SETTINGS
@given(expressions, events)
def test_generated_expressions_parse_and_never_raise(text: str, event: dict[str, Any]) -> None:
    expression = valid(text)
    first = expression.evaluate(event)
    _check_result(*first)
    assert expression.evaluate(event) == first  # pure: same input, same answer
    assert expression.matches(event) is (first[0] is True and first[1] is None)


@SETTINGS
@given(
    json_values
    | st.dictionaries(
        st.sampled_from(["exact", "all", "not", "sql", "x"]), json_values, max_size=2
    ),
    events,
)
def test_compile_filter_only_raises_invalid_filter(spec: Any, event: dict[str, Any]) -> None:
    try:
        compiled = compile_filter(spec)
    except InvalidFilter:
        return
    assert isinstance(compiled, Filter)
    assert compiled.matches(event) in (True, False)


filter_specs = st.recursive(
    st.one_of(
        st.builds(
            lambda dialect, name, text: {dialect: {name: text}},
            st.sampled_from(["exact", "prefix", "suffix"]),
            st.sampled_from([*NAMES[:6], "data.a", "data.labels.a"]).filter(lambda n: n != "data"),
            st.text(min_size=1, max_size=4),
        ),
        expressions.map(lambda text: {"sql": text}),
    ),
    lambda inner: (
        st.builds(lambda f: {"not": f}, inner)
        | st.builds(lambda fs: {"all": fs}, st.lists(inner, min_size=1, max_size=3))
        | st.builds(lambda fs: {"any": fs}, st.lists(inner, min_size=1, max_size=3))
    ),
    max_leaves=6,
)


@SETTINGS
@given(filter_specs, events)
def test_generated_filters_compile_round_trip_and_never_raise(
    spec: dict[str, Any], event: dict[str, Any]
) -> None:
    compiled = compile_filter(spec, limits=ROOMY)
    assert compile_filter(compiled.spec, limits=ROOMY).spec == compiled.spec
    result = compiled.matches(event)
    assert result in (True, False)
    assert compiled.evaluate(event)[0] is result


def _reference_like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@SETTINGS
@given(st.text(alphabet="ab%_\\", max_size=8), st.text(alphabet="ab%_\\\n", max_size=10))
def test_like_agrees_with_a_reference_regex(pattern: str, text: str) -> None:
    expected = _reference_like(pattern).fullmatch(text) is not None
    assert compile_like(pattern)(text) is expected


def _wrap(value: int) -> int:
    return (value - INT_MIN) % 2**32 + INT_MIN


@SETTINGS
@given(
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.sampled_from(["+", "-", "*", "/", "%"]),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
)
def test_arithmetic_is_32_bit_truncated(a: int, op: str, b: int) -> None:
    result, error = compile_sql(f"x {op} y").evaluate({"x": a, "y": b})
    if op in "/%" and b == 0:
        assert (result, error and error.kind) == (0, "math")
        return
    if op in "+-*":
        exact = {"+": a + b, "-": a - b, "*": a * b}[op]
    else:
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        exact = quotient if op == "/" else a - b * quotient
    assert result == _wrap(exact)
    assert (error is not None) is (exact != _wrap(exact))


@SETTINGS
@given(expressions, events)
def test_compiled_expressions_agree_with_the_reference_evaluator(
    text: str, event: dict[str, Any]
) -> None:
    value, error = valid(text).evaluate(event)
    expected = reference.fail_fast(parse(text, limits=ROOMY), event)
    assert (value, error and error.kind) == expected
    assert type(value) is type(expected[0])
