"""What the workload did and saw, kept for the checks: acknowledged publishes, claims,
pull leases, config epochs and broker kills."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ack:
    """An event the broker acknowledged (2xx) with its seq."""

    source: str
    id: str
    seq: int
    event: dict[str, Any]
    mode: str
    """structured, binary, batch or reemit (for a reemit only lineage is compared)."""


@dataclass
class PullMessage:
    """One message handed to a pull consumer."""

    consumer: str
    subscription: str
    seq: int
    lease: str
    lease_expires_at: float
    started: float
    answered: float
    settled: str | None = None
    settle_started: float | None = None
    settle_answered: float | None = None


@dataclass
class Epoch:
    """A seq range routed under one configuration, with the dry run's answer for it."""

    first: int
    last: int
    decisions: dict[int, dict[str, Any]] = field(default_factory=dict)
    """seq -> {"routes": set, "targets": set of (route, target), "loop": bool}."""


@dataclass
class Ledger:
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    uncertain: set[tuple[str, str]] = field(default_factory=set)
    """Publishes whose answer never came (the broker was killed): stored at most once."""
    refused: list[tuple[str, str]] = field(default_factory=list)
    """New events of publishes answered 409: all-or-nothing means none is stored."""
    answer_problems: list[str] = field(default_factory=list)
    """Wrong answers seen at once (a duplicate with another seq, a conflict accepted)."""
    claims: list[dict[str, Any]] = field(default_factory=list)
    pull_batches: list[list[PullMessage]] = field(default_factory=list)
    kills: list[float] = field(default_factory=list)
    """time.monotonic() of each SIGKILL."""
    epochs: list[Epoch] = field(default_factory=list)
    operations: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    """Time spent per operation kind."""
    notes: list[str] = field(default_factory=list)

    def ack(self, ack: Ack) -> None:
        key = (ack.source, ack.id)
        known = self.acks.get(key)
        if known is not None and known.seq != ack.seq:
            self.answer_problems.append(
                f"{key} acknowledged as seq {known.seq} and later as seq {ack.seq}")
            return
        if known is None:
            self.acks[key] = ack

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def killed_between(self, start: float, end: float) -> bool:
        return any(start <= at <= end for at in self.kills)
