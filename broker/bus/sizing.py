"""The one event size limit (`max_event_bytes`), applied where every event is appended.

An event from outside — a publisher, a source plugin, an operator's re-emit — over the
limit is refused (`TooLarge`, 413 at HTTP). The broker's own records (proxy captures,
action results, dead letters, audit events) are kept instead: their largest values in
`data` are replaced by `{"elided_bytes": N}` until the event fits, so the record of what
happened is stored even when what it carried was too big.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from broker.errors import TooLarge

SETTING: Final = "max_event_bytes"
ELIDED: Final = "elided_bytes"
"""The member of the object that stands in for an elided value."""
_MARK_BYTES: Final = len(orjson.dumps({ELIDED: 10**12}))
"""An upper bound of a marker's encoded size."""
_ROUNDS: Final = 8


def too_large(size: int, limit: int, index: int | None = None) -> TooLarge:
    """The error for an event of `size` bytes (at batch `index`) over `limit`."""
    where = f"batch entry {index}: " if index is not None else ""
    return TooLarge(f"{where}the event is {size} bytes serialized, more than the limit of"
                    f" {limit} ({SETTING})", limit=limit, size=size, index=index,
                    setting=SETTING)


def elided(event: dict[str, Any], size: int, limit: int) -> dict[str, Any]:
    """A copy of `event` (encoded in `size` bytes) whose `data` has its largest values
    replaced by markers until the whole fits `limit`; TooLarge when even that cannot
    (the attributes alone are too long, or `data` is not JSON)."""
    data = event.get("data")
    rounds = 0
    while size > limit:
        if not isinstance(data, dict | list) or rounds == _ROUNDS:
            raise too_large(size, limit)
        data = _shrink(data, size - limit)
        event = {**event, "data": data}
        size = len(orjson.dumps(event))
        rounds += 1
    return event


def _shrink(value: dict[str, Any] | list[Any], excess: int) -> Any:
    """`value` at least `excess` bytes smaller: the biggest child is shrunk in place when
    that alone is enough (keeping the structure around it), else replaced, and so on."""
    keys: list[Any] = list(value) if isinstance(value, dict) else list(range(len(value)))
    sizes = {key: len(orjson.dumps(value[key])) for key in keys}
    out: Any = dict(value) if isinstance(value, dict) else list(value)
    for key in sorted(keys, key=sizes.__getitem__, reverse=True):
        saved = sizes[key] - _MARK_BYTES
        if saved <= 0:
            break
        child = out[key]
        if saved >= excess and isinstance(child, dict | list) and child:
            out[key] = _shrink(child, excess)
            return out
        out[key] = {ELIDED: sizes[key]}
        excess -= saved
        if excess <= 0:
            return out
    return {ELIDED: len(orjson.dumps(value))}
