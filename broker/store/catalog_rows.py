"""The catalog's row form, shared by the backends: the shape as one JSON column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from broker.catalog.model import CatalogEntry, FieldStat

COLUMNS = "source, type, first_seen, last_seen, count, arrivals, gap_s, rate, silent, shape"


def shape_json(entry: CatalogEntry) -> str:
    return orjson.dumps({
        "events": entry.events, "truncated": entry.truncated,
        "fields": {p: [list(s.types), s.seen] for p, s in entry.fields.items()},
    }).decode()


def row_values(entry: CatalogEntry) -> tuple[Any, ...]:
    """The values of COLUMNS for an entry."""
    return (entry.source, entry.type, entry.first_seen, entry.last_seen, entry.count,
            entry.arrivals, entry.gap_s, entry.rate, bool(entry.silent), shape_json(entry))


def row_to_entry(row: Sequence[Any]) -> CatalogEntry:
    """An entry from a row of COLUMNS."""
    shape = orjson.loads(row[9])
    fields = {p: FieldStat(tuple(types), int(seen))
              for p, (types, seen) in shape.get("fields", {}).items()}
    return CatalogEntry(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]),
                        None if row[6] is None else float(row[6]), float(row[7]),
                        bool(row[8]), int(shape.get("events", 0)), fields,
                        bool(shape.get("truncated", False)))
