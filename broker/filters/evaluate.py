"""The domain side of ``POST /v1/filters/evaluate``: check an expression or filter on an event."""

from __future__ import annotations

from typing import Any

from broker.errors import BadRequest, InvalidFilter
from broker.filters.checks import FilterWarning
from broker.filters.dialects import compile_filter
from broker.filters.expression import compile_sql
from broker.filters.limits import FilterLimits, FilterTooLarge
from broker.filters.values import PARSE


def evaluate_request(body: dict[str, Any], limits: FilterLimits | None = None
                     ) -> dict[str, Any]:
    """Evaluate ``{"expression"|"filter", "event"}``: ``{"value", "error", "warnings"}``.

    A CESQL expression answers its value (Boolean, Integer or String); a filter answers
    whether it matches. An expression or filter that does not compile is reported as an
    error of kind ``parse`` with the value ``false`` (as the conformance suite expects),
    not raised: the console checks text while it is being typed. ``warnings`` lists what
    compiling found that makes it never match as a filter (an unknown function, ...).
    Raises ``BadRequest`` when the body itself has the wrong shape, and ``FilterTooLarge``
    when the expression or filter is over ``limits`` (the configured ones by default).
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'event' and 'expression' or 'filter'")
    has_expression = "expression" in body
    has_filter = "filter" in body
    if has_expression == has_filter:
        raise BadRequest("give exactly one of 'expression' and 'filter'")
    event = body.get("event")
    if not isinstance(event, dict):
        raise BadRequest("'event' must be a JSON object (a structured-mode CloudEvent)")

    warnings: tuple[FilterWarning, ...]
    try:
        if has_expression:
            expression = body["expression"]
            if not isinstance(expression, str):
                raise BadRequest("'expression' must be a string")
            compiled = compile_sql(expression, limits=limits)
            value, error = compiled.evaluate(event)
            warnings = compiled.warnings
        else:
            flt = compile_filter(body["filter"], limits=limits)
            value, error = flt.evaluate(event)
            warnings = flt.warnings
    except FilterTooLarge:
        raise  # refused: a tester must not be a way around the limits
    except InvalidFilter as exc:
        return {
            "value": False,
            "error": {"kind": PARSE, "message": exc.detail, "position": exc.extra.get("position")},
            "warnings": [],
        }
    return {"value": value, "error": None if error is None else error.to_dict(),
            "warnings": [warning.to_dict() for warning in warnings]}
