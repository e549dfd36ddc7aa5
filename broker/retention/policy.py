"""Retention policies and the one decision they make: may this event go now?

Pure: no store, no clock. The service (`service.py`) feeds it rows and the time; the
backend re-checks, inside the deleting transaction, that nothing still needs the rows
(open items, open deliveries, pending jobs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.errors import BadRequest, InvalidConfig
from broker.store.window import DedupeWindow, parse_window
from broker.timeutil import parse_duration

if TYPE_CHECKING:
    from broker.settings import Settings


@dataclass(frozen=True, slots=True)
class TypeRule:
    """Events whose type matches `pattern` (`*` any characters) are kept `age_s`."""

    pattern: str
    age_s: float
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, pattern: str, age_s: float) -> TypeRule:
        body = ".*".join(re.escape(part) for part in pattern.split("*"))
        return cls(pattern, age_s, re.compile(f"^{body}$"))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored event as retention sees it."""

    seq: int
    type: str
    recvtime: str


@dataclass(frozen=True)
class RetentionPolicy:
    """What the retention settings say; `active` is False when nothing is ever removed."""

    max_age_s: float | None = None
    max_events: int = 0
    max_bytes: int = 0
    types: tuple[TypeRule, ...] = ()
    resume_window_s: float = 3600.0
    batch: int = 2000
    window: DedupeWindow = field(default_factory=DedupeWindow)

    @property
    def active(self) -> bool:
        return bool(self.max_age_s is not None or self.max_events or self.max_bytes
                    or self.types)

    def age_of(self, type_: str) -> float | None:
        """How long an event of this type is kept by age (None: no age limit)."""
        for rule in self.types:
            if rule.regex.match(type_):
                return rule.age_s
        return self.max_age_s

    def kept_longer(self, type_: str) -> bool:
        """A per-type rule keeps this type longer than the default: the count and size
        limits do not remove it before its own age."""
        for rule in self.types:
            if rule.regex.match(type_):
                return self.max_age_s is None or rule.age_s > self.max_age_s
        return False

    @property
    def shortest_age_s(self) -> float | None:
        """The shortest age any rule gives (the oldest events any rule could remove are
        younger than the default's when a per-type rule is shorter)."""
        ages = [r.age_s for r in self.types] + (
            [self.max_age_s] if self.max_age_s is not None else [])
        return min(ages) if ages else None


def expired(policy: RetentionPolicy, row: Candidate, age_s: float) -> bool:
    """`row` (received `age_s` seconds ago) is past the age its type is kept for."""
    limit = policy.age_of(row.type)
    return limit is not None and age_s > limit


def squeezed(policy: RetentionPolicy, row: Candidate, age_s: float) -> bool:
    """The count or size limit may remove `row`: older than the resume window, and not
    kept longer by a per-type rule."""
    return age_s > policy.resume_window_s and not policy.kept_longer(row.type)


def parse_types(text: str) -> tuple[TypeRule, ...]:
    """`deploy.*=365d, heartbeat.*=1d` -> rules in order (the first match wins)."""
    rules = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        pattern, sep, age = part.partition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"{part!r} is not pattern=duration")
        rules.append(TypeRule.of(pattern.strip(), parse_duration(age.strip(), pattern)))
    return tuple(rules)


def policy_of(settings: Settings) -> RetentionPolicy:
    """The policy the settings describe; InvalidConfig naming the setting otherwise."""
    def fail(name: str, why: object) -> InvalidConfig:
        return InvalidConfig(f"{name}: {why}", field=name)

    try:
        period_s = parse_duration(settings.log_partition, "log_partition")
    except BadRequest as exc:
        raise fail("log_partition", exc.detail) from None
    if period_s < 60 or period_s != int(period_s):
        raise fail("log_partition", "must be whole seconds, at least 1m")
    try:
        periods = parse_window(settings.dedupe_window)
    except ValueError:
        raise fail("dedupe_window", "must be a number of periods (at least 1) or"
                   f" forever, got {settings.dedupe_window!r}") from None
    try:
        max_age = (parse_duration(settings.retention_max_age, "retention_max_age")
                   if settings.retention_max_age.strip() else None)
        resume = parse_duration(settings.retention_resume_window or "0",
                                "retention_resume_window")
    except BadRequest as exc:
        raise fail("retention_max_age" if "max_age" in exc.detail
                   else "retention_resume_window", exc.detail) from None
    try:
        types = parse_types(settings.retention_types)
    except (ValueError, BadRequest) as exc:
        detail = exc.detail if isinstance(exc, BadRequest) else str(exc)
        raise fail("retention_types", detail) from None
    return RetentionPolicy(max_age_s=max_age, max_events=settings.retention_max_events,
                           max_bytes=settings.retention_max_bytes, types=types,
                           resume_window_s=resume, batch=settings.retention_batch,
                           window=DedupeWindow(int(period_s), periods))
