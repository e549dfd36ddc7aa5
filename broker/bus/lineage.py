"""Lineage of derived events: causation, correlation, hop count, and the bound on how many
events one root event may cause (with one loop notice per root)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.numbers import INT32_MAX, whole_number_or

LOOP_TYPE = "opsbus.loop.detected"
LOOP_SOURCE = "opsbus/broker"


def hop_count(value: Any) -> int:
    """The `hopcount` extension as an int: binary-mode publishers send it as a string,
    and a loop through a webhook that copies `ce-` headers must still be counted. Ingest
    refuses anything but a whole number in the CloudEvents Integer range; an event
    stored before that rule counts as 0."""
    return whole_number_or(value, 0, maximum=INT32_MAX)


def over_hop_limit(event: dict[str, Any], limit: int) -> bool:
    """An event this many hops from its root is stored but not routed."""
    hops = event.get("hopcount")
    return hops is not None and hop_count(hops) > limit


def with_lineage(event: dict[str, Any], cause: dict[str, Any]) -> dict[str, Any]:
    """A copy of `event` carrying causation, correlation and hop count from `cause`."""
    derived = dict(event)
    derived["causationid"] = str(cause["id"])
    derived.setdefault("correlationid", cause.get("correlationid") or str(cause["id"]))
    # Capped: past the hop limit nothing is routed anyway, and the value must stay a
    # CloudEvents Integer.
    derived["hopcount"] = min(hop_count(cause.get("hopcount")) + 1, INT32_MAX)
    return derived


@dataclass(frozen=True, slots=True)
class RootUse:
    """What a root event has used so far: descendants stored, and whether its one loop
    notice was published."""

    descendants: int = 0
    noticed: bool = False


UNUSED = RootUse()

ReadRootUse = Callable[[int], Awaitable[RootUse]]


class DescendantBudget:
    """Counts, per root event, the events derived from it (directly or not), in one write
    transaction, on top of what earlier transactions recorded.

    A root is an event published without a cause (or by an operator's act, which starts
    afresh). Dead letters and action results are derived in later transactions than
    their root, so the counts are persisted per root (`RootUse`) and read back once per
    root and transaction. The log makes every increment undoable with the unit of work
    that made it."""

    def __init__(self, limit: int, read: ReadRootUse) -> None:
        self.limit = limit
        self._read = read
        self._count: dict[int, int] = {}
        self._noticed: dict[int, bool] = {}
        self._log: list[tuple[int, bool]] = []
        """(root, is_notice) per increment, in order."""
        self._first_new_seq: int | None = None

    def appended(self, seq: int) -> None:
        """An event was appended in this transaction: roots at or above the first such
        seq are new, with nothing used yet (no read needed)."""
        if self._first_new_seq is None:
            self._first_new_seq = seq

    async def _load(self, root: int) -> None:
        if root in self._count:
            return
        if self._first_new_seq is not None and root >= self._first_new_seq:
            use = UNUSED
        else:
            use = await self._read(root)
        self._count[root] = use.descendants
        self._noticed[root] = use.noticed

    async def take(self, root: int) -> bool:
        """Count one more descendant of `root`; False (nothing counted) when the root has
        used its budget. The last unit is kept for the root's loop notice until that
        has been published, so a root never causes more than `limit` events in all."""
        await self._load(root)
        kept = 0 if self._noticed[root] else 1
        if self._count[root] >= self.limit - kept:
            return False
        self._count[root] += 1
        self._log.append((root, False))
        return True

    async def first_notice(self, root: int) -> bool:
        """True once per root: the one loop notice may be published now (it counts as
        one of the root's descendants)."""
        await self._load(root)
        if self._noticed[root]:
            return False
        self._noticed[root] = True
        self._count[root] += 1
        self._log.append((root, True))
        return True

    def mark(self) -> int:
        return len(self._log)

    def undo(self, mark: int) -> None:
        for root, notice in reversed(self._log[mark:]):
            self._count[root] -= 1
            if notice:
                self._noticed[root] = False
        del self._log[mark:]

    def changes(self) -> list[tuple[int, int, bool]]:
        """(root, descendants added, noticed now) per root touched in this transaction."""
        added: dict[int, list[Any]] = {}
        for root, notice in self._log:
            entry = added.setdefault(root, [0, False])
            entry[0] += 1
            if notice:
                entry[1] = True
        return [(root, n, noticed) for root, (n, noticed) in added.items()]


def loop_notice(*, reason: str, limit: int, event: dict[str, Any], seq: int | None,
                root: dict[str, Any], chain: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The body of the one `opsbus.loop.detected` notice of a root: why the chain was cut
    (`hop_limit`: an event went too many hops from its root, stored but not routed;
    `descendant_limit`: the root caused `limit` events, later ones are not stored)."""
    return {
        "reason": reason, "limit": limit, "root": root, "chain": list(chain),
        "seq": seq, "id": event.get("id"), "source": event.get("source"),
        "type": event.get("type"), "hopcount": hop_count(event.get("hopcount")),
    }
