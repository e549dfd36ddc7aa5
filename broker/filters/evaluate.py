"""The domain side of ``POST /v1/filters/evaluate``: check an expression or filter on an event."""

from __future__ import annotations

from typing import Any

from broker.errors import BadRequest, InvalidFilter
from broker.filters.dialects import compile_filter
from broker.filters.expression import compile_sql
from broker.filters.values import PARSE


def evaluate_request(body: dict[str, Any]) -> dict[str, Any]:
    """Evaluate ``{"expression"|"filter", "event"}`` and answer ``{"value", "error"}``.

    A CESQL expression answers its value (Boolean, Integer or String); a filter answers
    whether it matches. An expression or filter that does not compile is reported as an
    error of kind ``parse`` with the value ``false`` (as the conformance suite expects),
    not raised: the console checks text while it is being typed. Raises ``BadRequest``
    only when the body itself has the wrong shape.
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

    try:
        if has_expression:
            expression = body["expression"]
            if not isinstance(expression, str):
                raise BadRequest("'expression' must be a string")
            value, error = compile_sql(expression).evaluate(event)
        else:
            value, error = compile_filter(body["filter"]).evaluate(event)
    except InvalidFilter as exc:
        return {
            "value": False,
            "error": {"kind": PARSE, "message": exc.detail, "position": exc.extra.get("position")},
        }
    return {"value": value, "error": None if error is None else error.to_dict()}
