"""The catalog in memory: updated from each committed batch, it notices drift (a field
added, removed or retyped; a producer gone silent or back) and hands out what changed
since the last flush. No I/O: the feature (`broker.catalog`) persists and publishes."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broker.bus.log import events_of
from broker.catalog.model import RATE_WINDOW_S, CatalogEntry, FieldStat
from broker.catalog.shape import paths_of, topmost, types_of
from broker.timeutil import parse_rfc3339

if TYPE_CHECKING:
    from broker.bus import StoredEvent

_NO_CHANGES: list[dict[str, Any]] = []
"""What `_learn` answers for an event that changed nothing (never added to)."""
GAP_WEIGHT = 0.25
"""Weight of the newest gap in the moving average of gaps."""
MIN_ARRIVALS = 3
"""Arrivals needed before a usual gap is trusted to call a producer silent."""
Flat = tuple[tuple[str, ...], tuple[type, ...]]
"""An object of scalars as `_flat` spells it: its keys, and the types of their values."""
BUS_SOURCES = "opsbus/"
"""The bus's own events are not catalogued: the broker writes them, they cannot drift
without a release, and catalog announcements must not feed the catalog."""
_SOURCE = operator.itemgetter("source")
_TYPE = operator.itemgetter("type")


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    """The bounds and thresholds of the catalog (the `catalog_*` settings)."""

    enabled: bool = True
    max_entries: int = 10_000
    max_fields: int = 200
    max_depth: int = 8
    learn_events: int = 20
    silence_factor: float = 3.0
    silence_min_s: float = 60.0
    interval_s: float = 30.0
    sample_per_commit: int = 10


@dataclass(slots=True)
class Drift:
    """What changed about one (source, type), to announce; `cause` is the event that
    showed it (None for silence)."""

    source: str
    type: str
    changes: list[dict[str, Any]]
    cause: StoredEvent | None = None


class _Field:
    __slots__ = ("seen", "types")

    def __init__(self, types: tuple[str, ...], seen: int) -> None:
        self.types = types
        self.seen = seen


@dataclass(slots=True)
class _Live:
    """One (source, type) as this process knows it, and what it has flushed."""

    source: str
    type: str
    first_seen: str
    last_seen: str
    last_epoch: float
    count: int = 0
    arrivals: int = 0
    gap_s: float | None = None
    rate: float = 0.0
    silent: bool = False
    events: int = 0
    fields: dict[str, _Field] = field(default_factory=dict)
    required: int = 0
    """How many fields every sampled event had."""
    truncated: bool = False
    flushed: CatalogEntry | None = None
    """The totals as last written (or loaded): a flush writes what was added since."""
    shape: dict[str, str] | None = None
    """The paths of the last event learned from, and below the fields they count in:
    an event of the same shape next changes nothing but those counts (`_learn`)."""
    shape_fields: list[_Field] = field(default_factory=list)
    flat: Flat | None = None
    """The last shape as `_flat` spells it, when its data held scalars only: an event
    with the same keys and value types has that shape, found without a walk."""

    def entry(self) -> CatalogEntry:
        return CatalogEntry(
            self.source, self.type, self.first_seen, self.last_seen, self.count,
            self.arrivals, self.gap_s, self.rate, self.silent, self.events,
            {p: FieldStat(f.types, f.seen) for p, f in self.fields.items()}, self.truncated)

    def since_flush(self) -> CatalogEntry:
        """The counts added since the last flush, with the current gap, rate, silence."""
        base = self.flushed
        if base is None:
            return self.entry()
        fields = {}
        for path, stat in self.fields.items():
            old = base.fields.get(path)
            if old is None or old.seen != stat.seen or old.types != stat.types:
                fields[path] = FieldStat(stat.types, stat.seen - (old.seen if old else 0))
        return CatalogEntry(
            self.source, self.type, self.first_seen, self.last_seen, self.count - base.count,
            self.arrivals - base.arrivals, self.gap_s, self.rate, self.silent,
            self.events - base.events, fields, self.truncated)

    def dirty(self) -> bool:
        base = self.flushed
        return base is None or base.count != self.count or base.silent != self.silent


def _live_from(entry: CatalogEntry) -> _Live:
    live = _Live(entry.source, entry.type, entry.first_seen, entry.last_seen,
                 parse_rfc3339(entry.last_seen).timestamp(), entry.count, entry.arrivals,
                 entry.gap_s, entry.rate, entry.silent, entry.events,
                 {p: _Field(s.types, s.seen) for p, s in entry.fields.items()},
                 0, entry.truncated, entry)
    live.required = sum(1 for f in live.fields.values() if f.seen >= live.events)
    return live


class Tracker:
    """Every catalogued (source, type) in memory, bounded by `max_entries`."""

    def __init__(self, settings: CatalogSettings) -> None:
        self.settings = settings
        self._entries: dict[tuple[str, str], _Live] = {}
        self.untracked = 0
        """Events of pairs past max_entries, not catalogued."""

    def load(self, entries: Iterable[CatalogEntry]) -> None:
        """Start from the stored catalog."""
        for entry in entries:
            self._entries[(entry.source, entry.type)] = _live_from(entry)

    def adopt(self, entries: Iterable[CatalogEntry]) -> None:
        """Take the stored entries this process has not seen itself (other processes
        sharing the store ingested them)."""
        for entry in entries:
            key = (entry.source, entry.type)
            if key not in self._entries and len(self._entries) < self.settings.max_entries:
                self._entries[key] = _live_from(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[CatalogEntry]:
        return [live.entry() for live in self._entries.values()]

    def entry(self, source: str, type_: str) -> CatalogEntry | None:
        live = self._entries.get((source, type_))
        return None if live is None else live.entry()

    def last_epoch(self, source: str, type_: str) -> float | None:
        live = self._entries.get((source, type_))
        return None if live is None else live.last_epoch

    # -- ingest ------------------------------------------------------------------------
    def observe(self, committed: list[StoredEvent], at: float) -> list[Drift]:
        """Count one committed batch (received at epoch `at`) and learn from the shapes
        of its events; the drifts it showed, one per (source, type) at most."""
        settings = self.settings
        # Most commits hold one producer's events, perhaps followed by the bus's own
        # (a queue's announcements): their sources and types, taken by `map` (no Python
        # step per event, no pair made per event), are then the first one's up to where
        # that source's events end. Only what follows that run takes the loop below.
        decoded = events_of(committed)
        sources = list(map(_SOURCE, decoded))
        types = list(map(_TYPE, decoded))
        batches: dict[tuple[str, str], list[StoredEvent]] = {}
        run = _leading_run(sources, types)
        if run:
            batches[(sources[0], types[0])] = committed if run == len(committed) \
                else committed[:run]
        for stored, key in zip(committed[run:], zip(sources[run:], types[run:],
                                                     strict=True), strict=True):
            found = batches.get(key)
            if found is None:
                batches[key] = [stored]
            else:
                found.append(stored)
        seen: dict[tuple[str, str], int] = {}
        drifts: dict[tuple[str, str], Drift] = {}
        limit = settings.sample_per_commit
        for key, events in batches.items():
            if key[0].startswith(BUS_SOURCES):
                continue
            live = self._entries.get(key)
            if live is None:
                if len(self._entries) >= settings.max_entries:
                    self.untracked += len(events)
                    continue
                first = events[0].recvtime
                live = self._entries[key] = _Live(key[0], key[1], first, first, at)
            seen[key] = len(events)
            # The shape learns from at most `limit` events of a pair per commit, spread
            # over the batch: the cost per commit stays bounded however large it is.
            sample = events if len(events) <= limit else \
                [events[i * len(events) // limit] for i in range(limit)]
            for stored in sample:
                changes = self._learn(live, stored.event)
                if changes:
                    drift = drifts.get(key)
                    if drift is None:
                        drifts[key] = Drift(key[0], key[1], changes, stored)
                    else:
                        drift.changes.extend(changes)
        for key, count in seen.items():
            live = self._entries[key]
            if live.silent:
                live.silent = False
                resumed = {"change": "resumed", "silent_for_s": round(at - live.last_epoch, 3),
                           "usual_gap_s": None if live.gap_s is None else round(live.gap_s, 3)}
                drift = drifts.setdefault(key, Drift(key[0], key[1], []))
                drift.changes.insert(0, resumed)
            self._arrived(live, count, at, committed[-1].recvtime)
        return list(drifts.values())

    def _arrived(self, live: _Live, count: int, at: float, stamp: str) -> None:
        if live.count:
            gap = at - live.last_epoch
            if gap > 0:
                live.gap_s = gap if live.gap_s is None else \
                    live.gap_s + GAP_WEIGHT * (gap - live.gap_s)
                live.arrivals += 1
            live.rate *= math.exp(-max(0.0, gap) / RATE_WINDOW_S)
        else:
            live.arrivals = 1
        live.rate += count / RATE_WINDOW_S
        live.count += count
        live.last_epoch = at
        live.last_seen = stamp

    def _learn(self, live: _Live, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Fold one event's shape into the entry's; the changes, once the shape is
        learned (`learn_events` sampled)."""
        flat = _flat(event)
        if flat is not None and flat == live.flat:
            for known in live.shape_fields:
                known.seen += 1
            live.events += 1
            return _NO_CHANGES
        settings = self.settings
        paths, full = paths_of(event, settings.max_fields, settings.max_depth)
        if full:
            live.truncated = True
        # The walk recorded `data` and each member: the spelling stands for the paths.
        live.flat = flat if flat is not None and len(paths) == len(flat[0]) + 1 else None
        if paths == live.shape:
            # The shape of the last event: every path is known with its types, and the
            # fields every event had are those they were (all of them had these), so
            # nothing changes but the counts.
            for known in live.shape_fields:
                known.seen += 1
            live.events += 1
            return _NO_CHANGES
        events = live.events
        learned = events >= settings.learn_events
        fields = live.fields
        added: list[str] = []
        retyped: list[dict[str, Any]] = []
        present_required = 0
        for path, kind in paths.items():
            stat = fields.get(path)
            if stat is None:
                if len(fields) >= settings.max_fields:
                    live.truncated = True
                    continue
                fields[path] = _Field(types_of(kind), 1)
                if learned:
                    added.append(path)
                continue
            if stat.seen >= events:
                present_required += 1
            stat.seen += 1
            if kind not in stat.types:
                new = types_of(kind)
                fresh = [t for t in new if t not in stat.types]
                if fresh:
                    if learned:
                        retyped.append({"change": "retyped", "path": path,
                                        "from": list(stat.types), "to": fresh})
                    stat.types = tuple(sorted({*stat.types, *new}))
        removed: list[str] = []
        if present_required < live.required:
            removed = [p for p, f in fields.items() if f.seen == events and p not in paths]
        live.events = events + 1
        # Required now: those that were and are here; on the first event, all of them.
        live.required = len(fields) if events == 0 else present_required
        # (Not after the first event: every field then counts as required, those the
        # event lacked included.)
        live.shape = paths if events else None
        if live.shape is None:
            live.flat = None
        live.shape_fields = [f for path in paths if (f := fields.get(path)) is not None]
        if not learned or not (added or removed or retyped):
            return _NO_CHANGES
        changes: list[dict[str, Any]] = [
            {"change": "added", "path": p, "types": list(fields[p].types)}
            for p in topmost(added)]
        changes += [{"change": "removed", "path": p, "types": list(fields[p].types)}
                    for p in topmost(removed)]
        changes += retyped
        return changes

    # -- time --------------------------------------------------------------------------
    def silences(self, now: float) -> list[Drift]:
        """Producers that stopped for longer than their usual gap times silence_factor (and
        at least silence_min_s): each announced once, until it arrives again."""
        settings = self.settings
        found = []
        for live in self._entries.values():
            if live.silent or live.gap_s is None or live.arrivals < MIN_ARRIVALS:
                continue
            quiet = now - live.last_epoch
            allowed = max(live.gap_s * settings.silence_factor, settings.silence_min_s)
            if quiet > allowed:
                live.silent = True
                found.append(Drift(live.source, live.type, [{
                    "change": "silent", "last_seen": live.last_seen,
                    "silent_for_s": round(quiet, 3), "usual_gap_s": round(live.gap_s, 3),
                    "allowed_s": round(allowed, 3)}]))
        return found

    # -- persistence -------------------------------------------------------------------
    def pending(self) -> list[CatalogEntry]:
        """What each changed entry gained since it was last flushed."""
        return [live.since_flush() for live in self._entries.values() if live.dirty()]

    def flushed(self, sent: list[CatalogEntry], stored: list[CatalogEntry]) -> None:
        """A flush of `sent` committed, leaving `stored` in the store: take the stored
        totals (other processes sharing the store add theirs) plus what arrived here
        since `sent` was taken."""
        gained = {(e.source, e.type): e for e in sent}
        for entry in stored:
            key = (entry.source, entry.type)
            live = self._entries.get(key)
            if live is None:
                continue
            fresh = _live_from(entry)
            previous = live.flushed
            base_count = (previous.count if previous else 0) + gained[key].count
            base_events = (previous.events if previous else 0) + gained[key].events
            fresh.count += live.count - base_count
            fresh.events += live.events - base_events
            fresh.arrivals, fresh.gap_s, fresh.rate = live.arrivals, live.gap_s, live.rate
            fresh.silent, fresh.last_epoch = live.silent, live.last_epoch
            fresh.last_seen = max(fresh.last_seen, live.last_seen)
            for path, stat in live.fields.items():
                old = previous.fields.get(path) if previous else None
                sent_seen = gained[key].fields.get(path)
                base = (old.seen if old else 0) + (sent_seen.seen if sent_seen else 0)
                mine = fresh.fields.get(path)
                if mine is None:
                    fresh.fields[path] = _Field(stat.types, stat.seen - base + (
                        sent_seen.seen if sent_seen else 0))
                else:
                    mine.seen += stat.seen - base
                    if stat.types != mine.types:
                        mine.types = tuple(sorted({*mine.types, *stat.types}))
            fresh.required = sum(1 for f in fresh.fields.values() if f.seen >= fresh.events)
            fresh.flushed = entry
            self._entries[key] = fresh

    # -- the filter function -------------------------------------------------------------
    def conforms(self, event: dict[str, Any]) -> bool:
        """Whether the event's data fits the shape learned for its (source, type): no
        path the shape lacks, no type it has not seen there, every required path. True
        while the shape is still being learned (or for a pair not catalogued)."""
        live = self._entries.get((str(event.get("source")), str(event.get("type"))))
        settings = self.settings
        if live is None or live.events < settings.learn_events:
            return True
        paths, _ = paths_of(event, settings.max_fields, settings.max_depth)
        present_required = 0
        for path, kind in paths.items():
            stat = live.fields.get(path)
            if stat is None:
                if live.truncated:
                    continue
                return False
            if any(t not in stat.types for t in types_of(kind)):
                return False
            if stat.seen >= live.events:
                present_required += 1
        return present_required >= live.required


def _leading_run(sources: list[str], types: list[str]) -> int:
    """How many of the first events are of the first one's (source, type), when no later
    event has its source (0 otherwise, or for none): those can be counted as one batch,
    and the pairs of the rest hold no event of it. Counted in C, no step per event."""
    if not sources:
        return 0
    run = sources.count(sources[0])
    if run == len(sources):  # the common commit: no slices to make
        return run if types.count(types[0]) == run else 0
    if sources[:run].count(sources[0]) == run and types[:run].count(types[0]) == run:
        return run
    return 0


def _flat(event: dict[str, Any]) -> Flat | None:
    """The keys of the event's data and the types of their values, when `data` is an
    object of scalars (None otherwise): two such events with the same spelling have the
    same `paths_of`, whose walk costs several times this."""
    data = event.get("data")
    if type(data) is not dict:
        return None
    kinds = tuple(map(type, data.values()))
    if dict in kinds or list in kinds:
        return None
    return tuple(data), kinds
