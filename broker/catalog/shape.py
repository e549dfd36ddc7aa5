"""The shape of one event's `data`: its JSON field paths and their types, bounded in
paths and nesting depth (pure; run for every catalogued event, so kept cheap).

Paths start at `data`: `data.labels.severity`; array elements share one path,
`data.alerts[]`, `data.alerts[].status` (the first ARRAY_SAMPLE elements are looked at).
Types are JSON's: string, integer, number, boolean, null, object, array; `binary` is data
carried as `data_base64`.
"""

from __future__ import annotations

from typing import Any, Final

ARRAY_SAMPLE: Final = 3
"""Elements of an array whose shape is looked at."""

_TYPES: Final[dict[type, str]] = {
    str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null",
    dict: "object", list: "array",
}
TYPE_NAMES: Final = (*_TYPES.values(), "binary")


def paths_of(event: dict[str, Any], max_fields: int, max_depth: int
             ) -> tuple[dict[str, str], bool]:
    """{path: type} of the event's data, and whether some paths were left out (more
    than `max_fields`). Nesting below `max_depth` levels is not looked into. A path whose
    array elements differ in type has them joined by `|` (`integer|string`)."""
    if "data" not in event:
        return ({"data": "binary"}, False) if "data_base64" in event else ({}, False)
    out: dict[str, str] = {}
    full = _walk(event["data"], "data", max_depth, out, max_fields)
    return out, full


def _merged(known: str, kind: str) -> str:
    """The types a path was seen with (`"number|string"`), with `kind` among them."""
    return "|".join(sorted({*known.split("|"), kind}))


def _walk(value: Any, path: str, depth: int, out: dict[str, str], room: int) -> bool:
    """Record `value` at `path` and below; True once `room` paths are used up."""
    kind = _TYPES.get(type(value), "string")
    known = out.get(path)
    if known is None:
        if len(out) >= room:
            return True
        out[path] = kind
    elif known != kind:
        out[path] = _merged(known, kind)
    if depth <= 0:
        return False
    if kind == "object":
        for key, item in value.items():
            child = f"{path}.{key}"
            member = type(item)
            if member is dict or member is list:
                if _walk(item, child, depth - 1, out, room):
                    return True
                continue
            # A scalar is recorded here, as the call above would: most members are
            # scalars, and a call per field was a good part of the walk.
            kind = _TYPES.get(member, "string")
            known = out.get(child)
            if known is None:
                if len(out) >= room:
                    return True
                out[child] = kind
            elif known != kind:
                out[child] = _merged(known, kind)
    elif kind == "array":
        inner = path + "[]"
        for item in value[:ARRAY_SAMPLE]:
            if _walk(item, inner, depth - 1, out, room):
                return True
    return False


def types_of(kind: str) -> tuple[str, ...]:
    """The types of one `paths_of` value."""
    return tuple(kind.split("|")) if "|" in kind else (kind,)


def topmost(paths: list[str]) -> list[str]:
    """The paths not below another of them: a removed object is one change, not one per
    field it held."""
    chosen = set(paths)
    return [p for p in paths if not any(parent in chosen for parent in _parents(p))]


def _parents(path: str) -> list[str]:
    found: list[str] = []
    cut = len(path)
    while True:
        dot = max(path.rfind(".", 0, cut), path.rfind("[]", 0, cut))
        if dot <= 0:
            return found
        found.append(path[:dot])
        cut = dot
