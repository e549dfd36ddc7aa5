"""What a filter requires of type, source or subject, tested in SQL before the filter
runs: every event the filter matches must pass the store's narrowing (it may let more
through), for SQLite's LIKE and IN as the store writes them."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.filters import compile_filter
from broker.filters.narrow import Narrow, like_pattern, narrowing_of
from broker.store.sqlite.events import narrow_clauses

SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

ALPHABET = "aAbB_%\\.é-"
text = st.text(ALPHABET, min_size=1, max_size=5)


def passes(narrow: tuple[Narrow, ...], event: dict[str, Any]) -> bool:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE events (type TEXT, source TEXT, subject TEXT)")
    conn.execute("INSERT INTO events VALUES (?, ?, ?)",
                 (event.get("type"), event.get("source"), event.get("subject")))
    params: list[Any] = []
    where = " AND ".join(narrow_clauses(narrow, params)) or "1"
    return conn.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0] == 1


def quoted(value: str) -> str:
    """A CESQL string literal whose value is `value` (no quotes in ALPHABET; a
    backslash pairs with the next character, kept verbatim, so a trailing one pairs
    with a space that `clean` then leaves out of the comparison)."""
    return "'" + value + (" " if value.endswith("\\") else "") + "'"


def clean(value: str) -> str:
    return value + (" " if value.endswith("\\") else "")


@pytest.mark.parametrize(("spec", "expected"), [
    ("type = 'a.b'", (Narrow("type", exact=frozenset(["a.b"])),)),
    ("subject LIKE 'node-1_' OR subject = 's7'",
     (Narrow("subject", exact=frozenset(["s7"]), patterns=frozenset(["node-1_"])),)),
    ("type = 'x' AND source LIKE 'a\\%b\\c%'",
     (Narrow("type", exact=frozenset(["x"])),
      Narrow("source", patterns=frozenset(["a\\%b\\\\c%"])))),
    ("type = 'x' OR source = 'y'", ()),
    ("NOT (type = 'x')", ()),
    ("type NOT LIKE 'x%'", ()),
    ("type IN ('a', 'b') XOR type = 'c'", ()),
    ({"prefix": {"type": "a_b"}}, (Narrow("type", patterns=frozenset(["a\\_b%"])),)),
    ({"any": [{"exact": {"type": "a"}}, {"suffix": {"type": "%z"}}]},
     (Narrow("type", exact=frozenset(["a"]), patterns=frozenset(["%\\%z"])),)),
    ({"not": {"exact": {"type": "a"}}}, ()),
    ("data.type = 'x'", ()),
])
def test_what_a_filter_requires(spec: Any, expected: tuple[Narrow, ...]) -> None:
    assert narrowing_of(compile_filter(spec).spec) == expected


@SETTINGS
@given(value=text, pattern=text)
def test_sql_like_lets_through_every_cesql_like_match(value: str, pattern: str) -> None:
    flt = compile_filter(f"subject LIKE {quoted(pattern)}")
    event = {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": value}
    narrow = narrowing_of(flt.spec)
    assert narrow == (Narrow("subject", patterns=frozenset([like_pattern(clean(pattern))])),)
    if flt.matches(event):
        assert passes(narrow, event), (value, pattern)


@SETTINGS
@given(values=st.fixed_dictionaries({"type": text, "source": text, "subject": text}),
       literals=st.lists(st.tuples(st.sampled_from(["type", "source", "subject"]),
                                   st.sampled_from(["=", "LIKE", "IN"]), text),
                         min_size=1, max_size=4),
       joins=st.lists(st.sampled_from(["AND", "OR"]), min_size=3, max_size=3))
def test_every_match_passes_the_narrowing(values: dict[str, str], literals: list[Any],
                                          joins: list[str]) -> None:
    terms = [f"{name} IN ({quoted(lit)}, 'zz')" if op == "IN" else
             f"{name} {op} {quoted(lit)}" for name, op, lit in literals]
    sql = terms[0]
    for join, term in zip(joins, terms[1:], strict=False):
        sql = f"({sql}) {join} {term}"
    flt = compile_filter(sql)
    event = {"specversion": "1.0", "id": "1", **values}
    if flt.matches(event):
        assert passes(narrowing_of(flt.spec), event), sql
