"""Event filters: CloudEvents SQL (CESQL v1) and the Subscriptions API filter dialects.

One implementation serves every place a user selects events (routes, subscriptions, the
SSE stream, event queries, the console's filter bar). Filters compile once into Python
closures; evaluating one is a few function calls, with no tree walk and no I/O.

Usage::

    f = compile_filter({"all": [{"prefix": {"type": "alertmanager."}},
                                {"sql": "data.labels.severity IN ('critical', 'page')"}]})
    f.matches(event)          # -> bool, never raises
    f.spec                    # the normalized dialect object, JSON-serialisable

    e = compile_sql("INT(priority) > 2 AND subject LIKE 'db-%'")
    e.evaluate(event)         # -> (value, EvalError | None), never raises

Dialects (``compile_filter``): ``{"exact": {attr: value}}``, ``{"prefix": {...}}``,
``{"suffix": {...}}`` (every entry must match; attribute values compare as their
canonical string: ``true``, ``42``), ``{"all": [filters]}``, ``{"any": [filters]}``,
``{"not": filter}`` and ``{"sql": "<CESQL>"}``. A plain string is a ``sql`` filter;
``None``, ``{}`` and a blank string match everything (``MATCH_ALL``).

CESQL follows the v1 specification: literals, attribute access (names are
case-insensitive), all operators with the spec's precedence, implicit and explicit casts,
the built-in functions, and its error model: an evaluation error yields the spec's value
plus an ``EvalError`` of kind ``parse``, ``math``, ``cast``, ``missingAttribute``,
``missingFunction``, ``functionEvaluation`` or ``generic`` (fail-fast mode). Two notes:

* the spec gives AND, OR and XOR one precedence level, evaluated left to right, and makes
  NOT bind tighter than comparisons: ``NOT a = b`` is ``(NOT a) = b``. Use parentheses.
* arithmetic that overflows 32 bits wraps around and reports a ``math`` error.

Extension, data fields: CESQL only addresses context attributes. opsbus also reads the
event's JSON ``data`` through dotted identifiers, ``data.severity``,
``data.labels.alertname``, ``data.alerts.0.status`` (a number steps into an array). A
path resolves only when ``data`` is JSON (an object or array); a missing step, or a JSON
null, behaves exactly like a missing attribute. Strings, booleans and 32-bit integers keep
their type; other values (floats, objects, arrays) are their compact JSON text. The dotted
form is not valid plain CESQL, so no standard expression changes meaning; the extension is
opted into by writing such a path, and ``compile_sql(text, data_paths=False)`` turns it
off. The exact/prefix/suffix dialects accept the same paths as attribute names.

Bounds: every filter is compiled under ``FilterLimits`` (length, syntax nodes, nesting,
IN-set size, dialect nesting; the broker's ``filter_*`` settings), and compiling stops
at the first part over them with ``FilterTooLarge`` naming the setting. Compiling also
reports ``warnings``: mistakes that make a filter never match (an unknown function, an
expression that is not a condition), which ``strict=True`` refuses.

Extension, the event catalog: ``CONFORMS()`` is true when the event's data fits the
shape the catalog learned for its (source, type) — no unknown path, no new type, every
required path (``use_shapes`` connects the broker's catalog; elsewhere it is always true).

Free text: ``compile_search("disk full")`` is a filter matching events whose type,
source, subject or data contain every word (case-insensitive), for ``q=`` parameters.
"""

from __future__ import annotations

from broker.filters.checks import FilterWarning
from broker.filters.dialects import MATCH_ALL, Filter, all_of, compile_filter, compile_search
from broker.filters.evaluate import evaluate_request
from broker.filters.expression import Expression, compile_sql
from broker.filters.functions import use_shapes
from broker.filters.limits import (
    DEFAULT_LIMITS,
    FilterLimits,
    FilterTooLarge,
    configure,
    limits_of,
)
from broker.filters.values import ERROR_KINDS, EvalError

__all__ = [
    "DEFAULT_LIMITS",
    "ERROR_KINDS",
    "MATCH_ALL",
    "EvalError",
    "Expression",
    "Filter",
    "FilterLimits",
    "FilterTooLarge",
    "FilterWarning",
    "all_of",
    "compile_filter",
    "compile_search",
    "compile_sql",
    "configure",
    "evaluate_request",
    "limits_of",
    "use_shapes",
]
