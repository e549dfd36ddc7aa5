"""The event catalog's records: one entry per (source, type) with when it was seen, how
often, and the shape of its `data` (what the catalog repository stores and hands out).

Times are stamps (RFC 3339 UTC, `broker.clock`), which compare as text in time order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHANGED = "opsbus.catalog.changed"
SOURCE = "opsbus/catalog"
RATE_WINDOW_S = 300.0
"""The rate is events per second, decayed with this time constant (about five minutes)."""


@dataclass(frozen=True, slots=True)
class FieldStat:
    """One path of a shape: the JSON types seen there and in how many sampled events."""

    types: tuple[str, ...]
    seen: int

    def to_dict(self, events: int) -> dict[str, Any]:
        return {"types": list(self.types), "required": self.seen >= events, "seen": self.seen}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What the catalog knows about one (source, type)."""

    source: str
    type: str
    first_seen: str
    last_seen: str
    count: int
    """Events stored."""
    arrivals: int = 1
    """Distinct commits that brought events of it (a batch is one arrival)."""
    gap_s: float | None = None
    """The usual gap between arrivals: a moving average of the gaps, in seconds."""
    rate: float = 0.0
    """Events per second at `last_seen`, decayed over RATE_WINDOW_S."""
    silent: bool = False
    """It stopped arriving for longer than its usual gap allows (announced once)."""
    events: int = 0
    """Events whose data shaped `fields`."""
    fields: Mapping[str, FieldStat] = field(default_factory=dict)
    """Path (`data`, `data.labels.severity`, `data.alerts[].status`) -> what was seen."""
    truncated: bool = False
    """Some paths were not recorded: the shape reached catalog_max_fields."""

    def rate_at(self, seconds_since_last: float) -> float:
        """The rate, decayed to `seconds_since_last` after the last arrival."""
        return self.rate * math.exp(-max(0.0, seconds_since_last) / RATE_WINDOW_S)

    def shape(self) -> dict[str, Any]:
        """The inferred shape: each path with its types, required or optional."""
        return {path: stat.to_dict(self.events) for path, stat in sorted(self.fields.items())}

    def to_dict(self, seconds_since_last: float, *, shape: bool = True) -> dict[str, Any]:
        """The API form (`GET /v1/catalog`)."""
        doc: dict[str, Any] = {
            "source": self.source, "type": self.type, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "count": self.count, "arrivals": self.arrivals,
            "rate_per_s": round(self.rate_at(seconds_since_last), 6),
            "usual_gap_s": None if self.gap_s is None else round(self.gap_s, 3),
            "silent": self.silent, "sampled": self.events, "fields": len(self.fields),
            "truncated": self.truncated,
        }
        if shape:
            doc["shape"] = self.shape()
        return doc


def combine(stored: CatalogEntry | None, seen: CatalogEntry, max_fields: int
            ) -> CatalogEntry:
    """The stored entry with what one process saw since its last flush added (`seen`
    holds that process's counts since then, and its current gap, rate and silence), so
    several processes sharing a store add up instead of overwriting each other."""
    if stored is None:
        return seen
    fields = dict(stored.fields)
    truncated = stored.truncated or seen.truncated
    for path, stat in seen.fields.items():
        old = fields.get(path)
        if old is None:
            if len(fields) >= max_fields:
                truncated = True
                continue
            fields[path] = stat
        else:
            types = old.types if set(stat.types) <= set(old.types) else \
                tuple(sorted({*old.types, *stat.types}))
            fields[path] = FieldStat(types, old.seen + stat.seen)
    return CatalogEntry(
        stored.source, stored.type, min(stored.first_seen, seen.first_seen),
        max(stored.last_seen, seen.last_seen), stored.count + seen.count,
        stored.arrivals + seen.arrivals, seen.gap_s if seen.gap_s is not None
        else stored.gap_s, seen.rate, seen.silent, stored.events + seen.events, fields,
        truncated)
