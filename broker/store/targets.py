"""An event's route target hits as kept in its own row (the `targets` column of `events`,
on every backend): a JSON array of `[route, target, detail]`, in the order of the hits,
each (route, target) once (the first hit of a pair is the one recorded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from broker.bus.log import TargetRecord


def encoded(hits: Sequence[TargetRecord]) -> bytes:
    """The `targets` value of an event with these hits (all of one event)."""
    if len(hits) == 1:  # the common case: one route, one target
        hit = hits[0]
        return orjson.dumps(((hit.route, hit.target, hit.detail),))
    return orjson.dumps(_fresh(hits, set()))


def merged(stored: bytes | str | None, hits: Sequence[TargetRecord]) -> bytes | None:
    """The `targets` value `stored` becomes with `hits` added (a later hand-over): a
    (route, target) it holds already stays as it was. None when nothing changes."""
    held: list[Any] = orjson.loads(stored) if stored else []
    added = _fresh(hits, {(route, target) for route, target, _ in held})
    return orjson.dumps(held + added) if added else None


def by_event(hits: Sequence[TargetRecord]) -> dict[int, list[TargetRecord]]:
    """`hits` grouped by the seq of their event, in order."""
    grouped: dict[int, list[TargetRecord]] = {}
    for hit in hits:
        grouped.setdefault(hit.seq, []).append(hit)
    return grouped


def records(seq: int, stored: bytes | str | None) -> list[TargetRecord]:
    """The hits of `stored`, ordered by route then target (as the API lists them)."""
    if not stored:
        return []
    return sorted((TargetRecord(seq, route, target, detail or {})
                   for route, target, detail in orjson.loads(stored)),
                  key=lambda r: (r.route, r.target))


def _fresh(hits: Sequence[TargetRecord], seen: set[tuple[str, str]]
           ) -> list[tuple[str, str, dict[str, Any]]]:
    fresh = []
    for hit in hits:
        pair = (hit.route, hit.target)
        if pair not in seen:
            seen.add(pair)
            fresh.append((hit.route, hit.target, hit.detail))
    return fresh
