"""CESQL behaviour from the v1 spec text: syntax, precedence, casts, errors, the data extension."""

from __future__ import annotations

from typing import Any

import pytest

from broker.errors import InvalidFilter
from broker.filters import ERROR_KINDS, EvalError, compile_sql

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "a1",
    "source": "alertmanager/prod",
    "type": "io.prometheus.alert.firing",
    "subject": "db-1",
    "time": "2024-05-01T10:00:00Z",
    "datacontenttype": "application/json",
    "priority": "3",
    "sequence": 42,
    "paged": True,
    "big": 2**40,
    "ratio": 0.5,
    "nothing": None,
    "data": {
        "severity": "critical",
        "count": 7,
        "flag": False,
        "score": 1.5,
        "none": None,
        "labels": {"alertname": "DiskFull", "team": "storage"},
        "alerts": [{"status": "firing"}, {"status": "resolved"}],
    },
}


def ev(expression: str, event: dict[str, Any] | None = None) -> tuple[object, EvalError | None]:
    return compile_sql(expression).evaluate(EVENT if event is None else event)


def value(expression: str, event: dict[str, Any] | None = None) -> object:
    result, error = ev(expression, event)
    assert error is None, error
    return result


def error_kind(expression: str, event: dict[str, Any] | None = None) -> str | None:
    _, error = ev(expression, event)
    return None if error is None else error.kind


def parse_position(expression: str, **kw: Any) -> dict[str, int]:
    with pytest.raises(InvalidFilter) as caught:
        compile_sql(expression, **kw)
    position = caught.value.extra["position"]
    assert isinstance(caught.value.detail, str) and caught.value.detail
    return position


# -- syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "line", "column"),
    [
        ("1 +", 1, 4),
        ("subject = 'x' AND", 1, 18),
        ("id = 'a'\n  AND ) ", 2, 7),
        ("'unterminated", 1, 1),
        ("a # b", 1, 3),
        ("x LIKE subject", 1, 8),
        ("1 IN ()", 1, 7),
        ("2147483648", 1, 1),
        ("1 - -2147483649", 1, 5),
        ("'line\none' = x AND (", 2, 15),
        ("my_attr = 1", 1, 1),
        ("abc1(2)", 1, 1),
        ("+'5'", 1, 1),
        ("", 1, 1),
        ("data.", 1, 6),
        ("a NOT b", 1, 3),
    ],
)
def test_parse_errors_carry_line_and_column(expression: str, line: int, column: int) -> None:
    assert parse_position(expression) == {"line": line, "column": column}


def test_invalid_filter_is_a_bad_request_problem() -> None:
    with pytest.raises(InvalidFilter) as caught:
        compile_sql("1 +")
    problem = caught.value.problem()
    assert problem["status"] == 400
    assert problem["position"] == {"line": 1, "column": 4}


def test_non_string_expression_is_invalid() -> None:
    with pytest.raises(InvalidFilter):
        compile_sql(42)  # type: ignore[arg-type]


def test_keywords_and_functions_are_case_insensitive() -> None:
    assert value("NoT FaLsE aNd 'a' lIkE 'a' XoR fAlSe") is True
    assert value("concat_ws('-', 'a', 'b')") == "a-b"
    assert value("exists ID") is True


def test_identifiers_are_case_insensitive_attribute_names() -> None:
    assert value("SUBJECT") == "db-1"
    assert value("Subject = 'db-1'") is True


def test_string_literal_escapes() -> None:
    assert value("'it\\'s'") == "it's"
    assert value("'it''s'") == "it's"  # SQL-style doubled quote
    assert value('"say ""hi"""') == 'say "hi"'
    assert value("'a\\nb'") == "a\\nb"  # other backslash pairs stay verbatim
    assert value("'multi\nline'") == "multi\nline"


def test_whitespace_tabs_and_newlines_are_skipped() -> None:
    assert value("\tsubject\r\n=\n'db-1' ") is True


def test_integer_literals_are_32_bit() -> None:
    assert value("2147483647") == 2147483647
    assert value("-2147483648") == -2147483648
    assert value("+5") == 5
    assert value("007") == 7
    parse_position("9" * 5000)  # far out of range, still a clean parse error


def test_nesting_limit_is_a_parse_error() -> None:
    parse_position("(" * 200 + "1" + ")" * 200)
    parse_position(" + ".join(["1"] * 400))
    # Long same-operator chains are flat, so generated disjunctions stay fine.
    big = " OR ".join(f"subject = 's{i}'" for i in range(500))
    assert value(big) is False


# -- precedence (3.6) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 4 - 3", 3),  # left to right
        ("100 / 10 / 5", 2),
        ("2 * 3 % 4", 2),
        ("-2 * 3", -6),
        ("1 + 2 = 3", True),
        ("1 < 2 = TRUE", True),
        # AND, OR, XOR: one level, left to right.
        ("FALSE AND TRUE OR TRUE", True),
        ("TRUE OR FALSE AND FALSE", False),
        ("TRUE XOR TRUE OR TRUE", True),
        ("TRUE OR TRUE XOR TRUE", False),
        # Unary binds tighter than everything but function calls.
        ("NOT FALSE = FALSE", False),
        ("NOT (FALSE = FALSE)", False),
        ("NOT TRUE = FALSE", True),
        # LIKE and IN bind tighter than binary operators.
        ("'ab' LIKE 'a%' = TRUE", True),
        ("1 + 1 IN (1)", 2),
        ("subject NOT LIKE 'db%' OR TRUE", True),
        ("ABS(-3) * 2", 6),
    ],
)
def test_precedence(expression: str, expected: object) -> None:
    result = value(expression)
    assert result == expected and type(result) is type(expected)


# -- operators, casts and math errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("-7 % 2", -1),
        ("7 % -2", 1),
        ("-7 % -2", -1),
        ("0 / 5", 0),
    ],
)
def test_truncated_division(expression: str, expected: int) -> None:
    assert value(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2147483647 + 1", -2147483648),
        ("-2147483648 - 1", 2147483647),
        ("65536 * 65536", 0),
        ("-2147483648 / -1", -2147483648),
        ("-(-2147483648)", -2147483648),
    ],
)
def test_integer_overflow_wraps_with_a_math_error(expression: str, expected: int) -> None:
    result, error = ev(expression)
    assert result == expected
    assert error is not None and error.kind == "math"


def test_comparison_casts_left_to_right_type() -> None:
    assert value("sequence = '42'") is True  # Integer cast to String
    assert value("priority = 3") is True  # String cast to Integer
    assert value("paged = 'true'") is True
    assert value("1 = TRUE") is True
    assert value("0 = TRUE") is False
    assert value("priority > 2 AND priority < 4") is True
    assert value("'10' > '9'") is True  # ordering is Integer only
    result, error = ev("subject = 5")
    assert (result, error and error.kind) == (False, "cast")


def test_ordering_on_non_numeric_strings_is_a_cast_error() -> None:
    result, error = ev("'a' < 'b'")
    assert result is False and error is not None and error.kind == "cast"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("42", True),
        ("+42", True),
        ("-42", True),
        ("2147483647", True),
        ("2147483648", False),
        (" 42", False),
        ("1_000", False),
        ("\u0663", False),  # a non-ASCII digit
        ("4.2", False),
        ("", False),
    ],
)
def test_string_to_integer_cast(text: str, ok: bool) -> None:
    result, error = ev("INT(x)", {**EVENT, "x": text})
    if ok:
        assert error is None and result == int(text)
    else:
        assert result == 0 and error is not None and error.kind == "cast"


def test_string_to_boolean_cast_is_case_insensitive() -> None:
    assert value("BOOL('TrUe')") is True
    assert value("NOT 'FALSE'") is True
    result, error = ev("'yes' AND TRUE")
    assert result is False and error is not None and error.kind == "cast"


def test_is_int_and_is_bool() -> None:
    assert value("IS_INT('12')") is True
    assert value("IS_INT('1x')") is False
    assert value("IS_INT(12)") is True
    assert value("IS_BOOL('false')") is True
    assert value("IS_BOOL('0')") is False
    assert value("IS_BOOL(TRUE)") is True


def test_trim_removes_unicode_whitespace_only() -> None:
    assert value("TRIM(x)", {"x": "\u3000\u00a0 a \t\n"}) == "a"
    assert value("TRIM(x)", {"x": "\x1fa\x1f"}) == "\x1fa\x1f"


def test_string_functions_count_characters() -> None:
    assert value("LENGTH('h\u00e9llo \U0001f600')") == 7
    assert value("UPPER('stra\u00dfe')") == "STRASSE"
    assert value("RIGHT('abc', 0)") == ""
    assert value("SUBSTRING('abc', 3)") == "c"
    assert value("SUBSTRING('abc', -3)") == "abc"
    assert value("SUBSTRING('abc', 2, 100)") == "bc"


def test_substring_with_negative_length_is_an_error() -> None:
    result, error = ev("SUBSTRING('abc', 1, -1)")
    assert result == "" and error is not None and error.kind == "functionEvaluation"


def test_function_argument_cast_error() -> None:
    result, error = ev("LEFT('abc', 'x')")
    assert result == "" and error is not None and error.kind == "cast"


@pytest.mark.parametrize("expression", ["FOO()", "ABS(1, 2)", "SUBSTRING('a')", "LOWER()"])
def test_undispatchable_calls_are_missing_function(expression: str) -> None:
    result, error = ev(expression)
    assert result is False and error is not None and error.kind == "missingFunction"


def test_a_failing_subexpression_yields_the_zero_value_of_the_whole() -> None:
    # LEFT returns 'abc' with its error, but as an operand the '=' answers its zero value.
    result, error = ev("LEFT('abc', -2) = 'abc'")
    assert result is False and error is not None and error.kind == "functionEvaluation"
    result, error = ev("LENGTH(missing) + 1")
    assert result == 0 and error is not None and error.kind == "missingAttribute"
    result, error = ev("CONCAT('a', missing)")
    assert result == "" and error is not None


def test_evaluation_errors_point_at_the_failing_node() -> None:
    _, error = ev("subject = 'db-1' AND\n  1 / 0 = 1")
    assert error == EvalError("math", "division by zero", {"line": 2, "column": 5})
    _, error = ev("id = 'a1' AND absent = 1")
    assert error is not None and error.position == {"line": 1, "column": 15}


def test_first_error_wins() -> None:
    _, error = ev("'x' + 1 / 0")
    assert error is not None and error.kind == "math"  # the right operand fails first
    _, error = ev("'x' + 'y'")
    assert error is not None and error.kind == "cast" and "'x'" in error.message


# -- LIKE, IN, EXISTS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("a.c", "a.c", True),
        ("abc", "a.c", False),
        ("a+c", "a+c", True),
        ("line1\nline2", "line1%", True),
        ("x", "%%", True),
        ("", "%", True),
        ("", "_", False),
        ("\u00e9", "_", True),
        ("abcabc", "%b%b%", True),
        ("abcabc", "%b%b%b%", False),
        ("aXbYc", "a_b_c", True),
        ("ab%", "ab\\%", True),
        ("a\\b", "a\\b", True),
        ("abab", "ab%ab", True),
        ("aba", "ab%ab", False),
        ("a[b]", "a[b]", True),
    ],
)
def test_like_patterns(text: str, pattern: str, expected: bool) -> None:
    escaped = pattern.replace("'", "\\'")
    assert value(f"x LIKE '{escaped}'", {"x": text}) is expected


def test_like_with_many_wildcards_stays_fast() -> None:
    text = "a" * 20_000
    expression = compile_sql("x LIKE '" + "%a" * 30 + "%b'")
    assert expression.evaluate({"x": text}) == (False, None)


def test_in_with_attributes_and_set_casts() -> None:
    assert value("sequence IN ('41', '42')") is True
    assert value("priority IN (1, 2, 3)") is True
    assert value("subject IN (source, id, 'db-1')") is True
    assert value("subject NOT IN ('x', 'y')") is True
    # Every element is cast, also after a match: 'x' takes Integer's zero value, 0.
    for expression in ("sequence IN ('x', 42)", "sequence IN (42, 'x')"):
        result, error = ev(expression)
        assert result is True and error is not None and error.kind == "cast"


def test_in_evaluates_every_element() -> None:
    # Only AND and OR short-circuit (3.4.2): a missing element is an error even after a match.
    for expression in ("'a1' IN (id, absent)", "'zz' IN (id, absent)"):
        result, error = ev(expression)
        assert result is False and error is not None and error.kind == "missingAttribute"


def test_exists() -> None:
    assert value("EXISTS subject") is True
    assert value("EXISTS nothing") is False  # JSON null counts as absent
    assert value("EXISTS data") is False  # the payload is not an attribute
    assert value("EXISTS 123") is False
    assert value("NOT EXISTS absent") is True


# -- attribute values ---------------------------------------------------------------------


def test_attribute_values_map_to_cesql_types() -> None:
    assert value("sequence") == 42
    assert value("paged") is True
    assert value("big") == str(2**40)  # beyond 32 bits: a String
    assert value("ratio") == "0.5"
    assert value("time") == "2024-05-01T10:00:00Z"
    result, error = ev("nothing")
    assert result is False and error is not None and error.kind == "missingAttribute"


def test_plain_data_identifier_is_not_an_attribute() -> None:
    result, error = ev("data = 'x'")
    assert result is False and error is not None and error.kind == "missingAttribute"


# -- the data extension --------------------------------------------------------------------


def test_data_paths_read_json_data() -> None:
    assert value("data.severity") == "critical"
    assert value("data.count") == 7
    assert value("data.count > 5") is True
    assert value("data.flag") is False
    assert value("data.score") == "1.5"
    assert value("data.labels.alertname LIKE 'Disk%'") is True
    assert value("data.labels") == '{"alertname":"DiskFull","team":"storage"}'
    assert value("data.alerts.1.status") == "resolved"
    assert value("DATA.labels.team") == "storage"  # the prefix is a keyword-like name
    assert value("data.labels.team IN ('storage', 'db')") is True


@pytest.mark.parametrize(
    "expression",
    ["data.missing", "data.labels.missing", "data.alerts.5.status", "data.severity.x", "data.none"],
)
def test_missing_data_paths_are_missing_attributes(expression: str) -> None:
    result, error = ev(expression)
    assert result is False and error is not None and error.kind == "missingAttribute"
    assert value(f"EXISTS {expression}") is False


@pytest.mark.parametrize(
    "event",
    [
        {"id": "1"},
        {"data": "plain text"},
        {"data_base64": "aGVsbG8="},
        {"data": None},
    ],
)
def test_data_paths_need_json_data(event: dict[str, Any]) -> None:
    result, error = ev("data.severity = 'critical'", event)
    assert result is False and error is not None and error.kind == "missingAttribute"


def test_data_paths_can_be_turned_off() -> None:
    assert parse_position("data.severity = 'x'", data_paths=False) == {"line": 1, "column": 5}


def test_data_path_keys_keep_their_case() -> None:
    assert value("data.Key_1", {"data": {"Key_1": "v"}}) == "v"
    result, _ = ev("data.key_1", {"data": {"Key_1": "v"}})
    assert result is False


# -- results --------------------------------------------------------------------------------


def test_matches_needs_boolean_true_without_error() -> None:
    assert compile_sql("subject = 'db-1'").matches(EVENT) is True
    assert compile_sql("subject").matches(EVENT) is False  # a String, not a Boolean
    assert compile_sql("1").matches(EVENT) is False
    assert compile_sql("absent = 1 OR TRUE").matches(EVENT) is False  # error first


def test_expression_type_and_cache() -> None:
    assert compile_sql("1 + 1").type == "Integer"
    assert compile_sql("subject").type == "Any"
    assert compile_sql("subject LIKE 'a'") is compile_sql("subject LIKE 'a'")


@pytest.mark.parametrize("event", [None, [], "x", {"subject": object()}, {"data": {1: 2}}])
def test_evaluation_never_raises_on_odd_input(event: Any) -> None:
    for text in ("subject = 'x'", "data.a = 1", "EXISTS subject", "LENGTH(subject)"):
        _, error = compile_sql(text).evaluate(event)
        assert error is None or error.kind in ERROR_KINDS
        assert compile_sql(text).matches(event) in (True, False)
