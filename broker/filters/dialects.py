"""Subscriptions API filter dialects (exact, prefix, suffix, all, any, not, sql) as closures."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, cast

from broker.errors import InvalidFilter
from broker.filters.checks import FilterWarning
from broker.filters.expression import compile_sql
from broker.filters.limits import FilterLimits, configured, exceeded
from broker.filters.search import search_matcher, search_terms
from broker.filters.values import (
    MISSING,
    EvalError,
    canonical_string,
    read_data_path,
)

Event = dict[str, Any]
Match = Callable[[Event], bool]
Explain = Callable[[Event], tuple[bool, "EvalError | None"]]

DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "sql", "search")
"""The Subscriptions API dialects, plus ``search`` (free text, an opsbus extension)."""

# CloudEvents attribute names are lower-case letters and digits; the data extension adds
# dot paths into JSON data, the same form CESQL expressions use.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+", re.ASCII)
_DATA_PATH = re.compile(r"data(\.[A-Za-z0-9_]+)+", re.ASCII)


class Filter:
    """A compiled filter: ``matches(event)`` plus the normalized dialect object in ``spec``.

    ``matches`` takes a structured-mode event dict and never raises: an evaluation error
    (a missing attribute, a cast that fails in a ``sql`` filter) means "no match".
    ``warnings`` lists what compiling found wrong with it (an unknown function, an
    expression that is not a condition), each located inside the dialect object.
    """

    __slots__ = ("_explain", "matches", "spec", "warnings")

    matches: Match

    def __init__(self, spec: dict[str, Any], match: Match, explain: Explain,
                 warnings: tuple[FilterWarning, ...] = ()) -> None:
        self.spec = spec
        # The closure itself, not a method that calls it: one call less per event.
        self.matches = match
        self._explain = explain
        self.warnings = warnings

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


def compile_filter(spec: dict[str, Any] | str | None, *, limits: FilterLimits | None = None,
                   strict: bool = False) -> Filter:
    """Compile a filter: a dialect object, a CESQL string, or ``None``/``{}`` for match-all.

    A blank string also means match-all (an empty ``?filter=`` parameter). Raises
    ``InvalidFilter`` naming the problem and where it is in the object, and its subclass
    ``FilterTooLarge`` when the filter is over ``limits`` (the configured ones by default;
    compiling stops at the first part over them). ``strict`` also refuses a filter with
    a blocking warning (one that cannot work as written), as saved filters should.
    """
    if spec is None:
        return MATCH_ALL
    if isinstance(spec, str):
        if not spec.strip():
            return MATCH_ALL
        spec = {"sql": spec}
    if isinstance(spec, dict) and not spec:
        return MATCH_ALL
    budget = _Budget(limits or configured())
    normalized, match, explain = _compile(spec, "filter", 0, budget)
    warnings = tuple(budget.warnings)
    if strict:
        for warning in warnings:
            if warning.blocking:
                raise InvalidFilter(f"{warning.where}: {warning.message}",
                                    position=warning.position, code=warning.code)
    # No wrapper catches exceptions here: every leaf test already turns a malformed event
    # into "no match" itself, and the combinators cannot raise, which saves a call per
    # filter per event.
    return Filter(normalized, match, explain, warnings)


class _Budget:
    """What the parts compiled so far have used of the limits, and what they warned of."""

    def __init__(self, limits: FilterLimits) -> None:
        self.limits = limits
        self.length = 0
        self.nodes = 0
        self.warnings: list[FilterWarning] = []

    def spend(self, where: str, *, nodes: int = 0, length: int = 0) -> None:
        self.nodes += nodes
        self.length += length
        if self.length > self.limits.max_length:
            raise _located(where, exceeded(
                "max_length", self.limits, "the filter's strings are more than"
                f" {self.limits.max_length} characters long"))
        if self.nodes > self.limits.max_nodes:
            raise _located(where, exceeded(
                "max_nodes", self.limits,
                f"the filter has more than {self.limits.max_nodes} syntax nodes"))


def _located(where: str, exc: InvalidFilter) -> InvalidFilter:
    """The same error (same class), its message prefixed with where it is."""
    return type(exc)(f"{where}: {exc.detail}", **exc.extra)


def _compile(spec: object, where: str, depth: int, budget: _Budget
             ) -> tuple[dict[str, Any], Match, Explain]:
    limits = budget.limits
    if depth > limits.max_dialect_depth:
        raise _located(where, exceeded(
            "max_dialect_depth", limits, "filters are nested too deeply (more than"
            f" {limits.max_dialect_depth} levels of all, any and not)"))
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
    # Nodes: a combinator object, each attribute entry, each word, each CESQL node.
    if dialect in ("exact", "prefix", "suffix"):
        return _compile_string_match(dialect, body, where, budget)
    if dialect in ("all", "any"):
        budget.spend(where, nodes=1)
        return _compile_list(dialect, body, where, depth, budget)
    if dialect == "not":
        budget.spend(where, nodes=1)
        inner, match, explain = _compile(body, where, depth + 1, budget)

        def negate(event: Event) -> bool:
            return not match(event)

        def explain_not(event: Event) -> tuple[bool, EvalError | None]:
            result, error = explain(event)
            return not result, error

        return {"not": inner}, negate, explain_not
    if dialect == "sql":
        return _compile_sql(body, where, budget)
    if dialect == "search":
        return _compile_search(body, where, budget)
    raise InvalidFilter(
        f"{where}: unknown filter dialect {dialect!r}; expected one of {', '.join(DIALECTS)}"
    )


def _compile_string_match(
    dialect: str, body: object, where: str, budget: _Budget
) -> tuple[dict[str, Any], Match, Explain]:
    if not isinstance(body, dict) or not body:
        raise InvalidFilter(
            f"{where}: must be a non-empty object of attribute name to string value"
        )
    tests: list[Match] = []
    for name, value in body.items():
        budget.spend(where, nodes=1, length=len(name) + (len(value) if isinstance(value, str)
                                                         else 0))
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


def _compile_list(dialect: str, body: object, where: str, depth: int, budget: _Budget
                  ) -> tuple[dict[str, Any], Match, Explain]:
    if not isinstance(body, list) or not body:
        raise InvalidFilter(f"{where}: must be a non-empty array of filters")
    compiled = [_compile(item, f"{where}[{index}]", depth + 1, budget)
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


def _compile_sql(body: object, where: str, budget: _Budget
                 ) -> tuple[dict[str, Any], Match, Explain]:
    if not isinstance(body, str) or not body.strip():
        raise InvalidFilter(f"{where}: must be a non-empty CESQL expression string")
    budget.spend(where, length=len(body))  # before reading it
    try:
        expression = compile_sql(body, limits=budget.limits)
    except InvalidFilter as exc:
        raise _located(where, exc) from None
    budget.spend(where, nodes=expression.shape.nodes)
    budget.warnings.extend(warning.at(where) for warning in expression.warnings)

    def explain(event: Event) -> tuple[bool, EvalError | None]:
        value, error = expression.evaluate(event)
        return value is True and error is None, error

    return {"sql": body}, expression.matches, explain


def _compile_search(body: object, where: str, budget: _Budget
                    ) -> tuple[dict[str, Any], Match, Explain]:
    if isinstance(body, str):
        budget.spend(where, length=len(body))  # before reading it
    terms = search_terms(body, where)
    budget.spend(where, nodes=len(terms))
    match = search_matcher(terms)

    def explain(event: Event) -> tuple[bool, EvalError | None]:
        return match(event), None

    return {"search": body}, match, explain


def compile_search(text: str | None, *, limits: FilterLimits | None = None) -> Filter:
    """The filter of a ``q=`` parameter: free-text search, ``MATCH_ALL`` when blank."""
    if text is None or not text.strip():
        return MATCH_ALL
    return compile_filter({"search": text}, limits=limits)


def all_of(*filters: Filter) -> Filter:
    """One filter matching what every one of ``filters`` matches (``MATCH_ALL`` skipped)."""
    chosen = [f for f in filters if f is not MATCH_ALL]
    if not chosen:
        return MATCH_ALL
    if len(chosen) == 1:
        return chosen[0]
    matches = tuple(f.matches for f in chosen)
    explains = tuple(f.evaluate for f in chosen)

    def match(event: Event) -> bool:
        return all(check(event) for check in matches)

    def explain(event: Event) -> tuple[bool, EvalError | None]:
        for check in explains:
            result, error = check(event)
            if not result:
                return False, error
        return True, None

    return Filter({"all": [f.spec for f in chosen]}, match, explain,
                  tuple(w for f in chosen for w in f.warnings))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number"}.get(
        type(value), type(value).__name__
    )
