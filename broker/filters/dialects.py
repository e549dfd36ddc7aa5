"""Subscriptions API filter dialects (exact, prefix, suffix, all, any, not, sql) as closures."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, cast

from broker.errors import InvalidFilter
from broker.filters.expression import compile_sql
from broker.filters.values import (
    MISSING,
    EvalError,
    canonical_string,
    read_data_path,
)

Event = dict[str, Any]
Match = Callable[[Event], bool]
Explain = Callable[[Event], tuple[bool, "EvalError | None"]]

DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "sql")
MAX_NESTING: Final = 64
"""Deepest nesting of `all`/`any`/`not`: deeper filters are not written by people, and a
route holding one must still fit the JSON encoder's depth limit when stored."""

# CloudEvents attribute names are lower-case letters and digits; the data extension adds
# dot paths into JSON data, the same form CESQL expressions use.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+", re.ASCII)
_DATA_PATH = re.compile(r"data(\.[A-Za-z0-9_]+)+", re.ASCII)


class Filter:
    """A compiled filter: ``matches(event)`` plus the normalized dialect object in ``spec``.

    ``matches`` takes a structured-mode event dict and never raises: an evaluation error
    (a missing attribute, a cast that fails in a ``sql`` filter) means "no match".
    """

    __slots__ = ("_explain", "matches", "spec")

    matches: Match

    def __init__(self, spec: dict[str, Any], match: Match, explain: Explain) -> None:
        self.spec = spec
        # The closure itself, not a method that calls it: one call less per event.
        self.matches = match
        self._explain = explain

    def evaluate(self, event: Event) -> tuple[bool, EvalError | None]:
        """Match and also report the first CESQL error met (for the route tester)."""
        try:
            return self._explain(event)
        except Exception:  # the same guarantee as matches(): never raise
            return False, None

    def __repr__(self) -> str:
        return f"Filter({self.spec!r})"


def _match_all(event: Event) -> bool:
    return True


MATCH_ALL: Final = Filter({}, _match_all, lambda event: (True, None))


def compile_filter(spec: dict[str, Any] | str | None) -> Filter:
    """Compile a filter: a dialect object, a CESQL string, or ``None``/``{}`` for match-all.

    A blank string also means match-all (an empty ``?filter=`` parameter). Raises
    ``InvalidFilter`` naming the problem and where it is in the object.
    """
    if spec is None:
        return MATCH_ALL
    if isinstance(spec, str):
        if not spec.strip():
            return MATCH_ALL
        spec = {"sql": spec}
    if isinstance(spec, dict) and not spec:
        return MATCH_ALL
    normalized, match, explain = _compile(spec, "filter")
    # No wrapper catches exceptions here: every leaf test already turns a malformed event
    # into "no match" itself, and the combinators cannot raise, which saves a call per
    # filter per event.
    return Filter(normalized, match, explain)


def _compile(spec: object, where: str, depth: int = 0
             ) -> tuple[dict[str, Any], Match, Explain]:
    if depth > MAX_NESTING:
        raise InvalidFilter(f"{where}: filters are nested too deeply (more than"
                            f" {MAX_NESTING} levels of all, any and not)")
    if not isinstance(spec, dict):
        raise InvalidFilter(f"{where}: a filter must be a JSON object, not {_kind(spec)}")
    if len(spec) != 1:
        found = ", ".join(sorted(map(str, spec))) or "nothing"
        raise InvalidFilter(
            f"{where}: a filter must have exactly one dialect key "
            f"({', '.join(DIALECTS)}), found: {found}"
        )
    ((dialect, body),) = spec.items()
    where = f"{where}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        return _compile_string_match(dialect, body, where)
    if dialect in ("all", "any"):
        return _compile_list(dialect, body, where, depth)
    if dialect == "not":
        inner, match, explain = _compile(body, where, depth + 1)

        def negate(event: Event) -> bool:
            return not match(event)

        def explain_not(event: Event) -> tuple[bool, EvalError | None]:
            result, error = explain(event)
            return not result, error

        return {"not": inner}, negate, explain_not
    if dialect == "sql":
        return _compile_sql(body, where)
    raise InvalidFilter(
        f"{where}: unknown filter dialect {dialect!r}; expected one of {', '.join(DIALECTS)}"
    )


def _compile_string_match(
    dialect: str, body: object, where: str
) -> tuple[dict[str, Any], Match, Explain]:
    if not isinstance(body, dict) or not body:
        raise InvalidFilter(
            f"{where}: must be a non-empty object of attribute name to string value"
        )
    tests: list[Match] = []
    for name, value in body.items():
        if not isinstance(name, str) or not (
            _ATTRIBUTE_NAME.fullmatch(name) or _DATA_PATH.fullmatch(name)
        ):
            raise InvalidFilter(
                f"{where}: {name!r} is not an attribute name (lower-case letters and digits) "
                f"or a data path (data.field.field)"
            )
        if name in ("data", "data_base64"):
            raise InvalidFilter(
                f"{where}: 'data' is the payload, not an attribute; address a JSON field as "
                f"data.<field>"
            )
        if not isinstance(value, str) or not value:
            raise InvalidFilter(f"{where}.{name}: the value must be a non-empty string")
        tests.append(_string_test(dialect, name, value))
    match = tests[0] if len(tests) == 1 else _all_of(tests)

    def explain(event: Event) -> tuple[bool, EvalError | None]:
        return match(event), None

    return {dialect: dict(body)}, match, explain


def _string_test(dialect: str, name: str, expected: str) -> Match:
    # The C-level str methods, not lambdas: this runs for every filter on every event.
    compare = cast(
        Callable[[str, str], bool],
        {"exact": str.__eq__, "prefix": str.startswith, "suffix": str.endswith}[dialect],
    )
    if name.startswith("data."):
        path = tuple(name.split(".")[1:])

        def data_test(event: Event) -> bool:
            try:
                actual = canonical_string(read_data_path(event, path))
                return actual is not None and compare(actual, expected)
            except Exception:  # not a dict: no match, as for a missing field
                return False

        return data_test

    def attribute_test(event: Event) -> bool:
        try:
            actual = event.get(name, MISSING)
            if type(actual) is not str:
                # Values compare as their canonical string: true, 42, compact JSON.
                actual = canonical_string(actual)
                if actual is None:
                    return False
            return compare(actual, expected)
        except Exception:  # not a dict: no match, as for a missing attribute
            return False

    return attribute_test


def _all_of(tests: list[Match]) -> Match:
    checks = tuple(tests)

    def all_of(event: Event) -> bool:
        for check in checks:
            if not check(event):
                return False
        return True

    return all_of


def _compile_list(dialect: str, body: object, where: str, depth: int
                  ) -> tuple[dict[str, Any], Match, Explain]:
    if not isinstance(body, list) or not body:
        raise InvalidFilter(f"{where}: must be a non-empty array of filters")
    compiled = [_compile(item, f"{where}[{index}]", depth + 1)
                for index, item in enumerate(body)]
    specs = [spec for spec, _, _ in compiled]
    matches = tuple(match for _, match, _ in compiled)
    explains = tuple(explain for _, _, explain in compiled)
    want = dialect == "any"

    if dialect == "all":
        match = matches[0] if len(matches) == 1 else _all_of(list(matches))
    else:

        def match(event: Event) -> bool:
            for check in matches:
                if check(event):
                    return True
            return False

    def explain(event: Event) -> tuple[bool, EvalError | None]:
        first_error = None
        for check in explains:
            result, error = check(event)
            first_error = first_error or error
            if result is want:
                return want, first_error
        return not want, first_error

    return {dialect: specs}, match, explain


def _compile_sql(body: object, where: str) -> tuple[dict[str, Any], Match, Explain]:
    if not isinstance(body, str) or not body.strip():
        raise InvalidFilter(f"{where}: must be a non-empty CESQL expression string")
    try:
        expression = compile_sql(body)
    except InvalidFilter as exc:
        raise InvalidFilter(f"{where}: {exc.detail}", **exc.extra) from None

    def explain(event: Event) -> tuple[bool, EvalError | None]:
        value, error = expression.evaluate(event)
        return value is True and error is None, error

    return {"sql": body}, expression.matches, explain


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number"}.get(
        type(value), type(value).__name__
    )
