"""The event log: stored events, and the repository contract every backend keeps for them.

The log is append-only and ordered by `seq`, a 64-bit integer assigned in commit order:
once a transaction has committed, no event with a lower seq can still commit (a backend
shared by several processes serialises its appends, e.g. with a counter row locked for
the transaction, so concurrent writers cannot commit seqs out of order). Readers rely on
it: a reader that has seen seq N has seen every committed event below N.
"""

from __future__ import annotations

import hashlib
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from broker.bus.lineage import RootUse
from broker.filters.narrow import Narrowing
from broker.store.transaction import Transaction


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes stored and streamed for an event (compact JSON, attribute order kept)."""
    return orjson.dumps(event)


def digest_of(raw: bytes) -> bytes:
    """The digest that tells a repeated (source, id) with other content from a duplicate,
    for a store that compares digests rather than the stored bytes."""
    return hashlib.blake2b(raw, digest_size=16).digest()


class StoredEvent:
    """A committed event: the CloudEvent plus the broker's own `seq`, `recvtime` and the
    names of the routes it matched. `raw` is the canonical JSON of the event; the dict is
    decoded lazily because the SSE fan-out only needs the bytes."""

    __slots__ = ("_event", "_frame", "raw", "recvtime", "root", "routes", "seq")

    def __init__(
        self,
        seq: int,
        recvtime: str,
        raw: bytes,
        routes: tuple[str, ...] = (),
        event: dict[str, Any] | None = None,
        root: int = 0,
    ) -> None:
        self.seq = seq
        self.recvtime = recvtime
        self.raw = raw
        self.routes = routes
        self.root = root
        """The seq of the root event this one descends from; 0 when it is a root."""
        self._event = event
        self._frame: bytes | None = None

    @property
    def lineage_root(self) -> int:
        """The root whose descendant budget this event's own descendants use."""
        return self.root or self.seq

    @property
    def event(self) -> dict[str, Any]:
        if self._event is None:
            self._event = orjson.loads(self.raw)
        return self._event

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def source(self) -> str:
        return str(self.event["source"])

    @property
    def type(self) -> str:
        return str(self.event["type"])

    def sse_frame(self) -> bytes:
        """The Server-Sent Events frame, built once and shared by every stream."""
        if self._frame is None:
            self._frame = b"id: %d\nevent: cloudevent\ndata: %s\n\n" % (self.seq, self.raw)
        return self._frame

    def to_dict(self) -> dict[str, Any]:
        """The API form: broker fields beside, not inside, the event's attributes."""
        return {"seq": self.seq, "recvtime": self.recvtime, "routes": list(self.routes),
                "event": self.event}

    def __repr__(self) -> str:
        return f"StoredEvent(seq={self.seq}, type={self.type!r}, id={self.id!r})"


_DECODED = operator.attrgetter("_event")


def events_of(batch: list[StoredEvent]) -> list[dict[str, Any]]:
    """The events of a batch as dicts: read from the records where they are decoded
    already, as a committed batch's are (no Python step per event), else decoded."""
    events = list(map(_DECODED, batch))
    if None in events:
        return [stored.event for stored in batch]
    return events


class AppendResult(NamedTuple):
    """What appending an event did: its seq, and whether it was already stored (a named
    tuple: one is made per event appended)."""

    seq: int
    duplicate: bool
    conflict: bool = False
    """True when (source, id) was stored before with different content."""
    dropped: bool = False
    """Not stored: the root event it derives from has used its descendant budget."""


@dataclass(slots=True)
class TargetRecord:
    """A route target hit, recorded with the event in its transaction. Not frozen (never
    changed either): one is made per target hit, and a frozen dataclass's __init__ sets
    each field through object.__setattr__."""

    seq: int
    route: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


RoutedRow = tuple[int, Sequence[str], Sequence[TargetRecord]]
"""(seq, the names of the routes an event matched, its target hits) for `set_routes`."""


EventItem = tuple[dict[str, Any], bytes, bytes | None]
"""(event, canonical bytes, digest) for an append; digest None: the store makes it from
the bytes if it needs one (`digest_of`)."""

item_event, item_bytes = operator.itemgetter(0), operator.itemgetter(1)
"""An `EventItem`'s event and its bytes: for loops over a batch made by `map` in C."""
result_seq, result_duplicate = operator.itemgetter(0), operator.itemgetter(1)
"""An `AppendResult`'s seq and duplicate flag, likewise."""


class EventWrites(ABC):
    """Event-log writes inside the writer's transaction."""

    @abstractmethod
    async def append(self, event: dict[str, Any], raw: bytes, recvtime: str,
                     digest: bytes | None, root: int = 0) -> AppendResult:
        """Append an event unless (source, id) is already stored; `root` is the seq of
        the root event it derives from (0: it is a root itself).

        Returns the new seq, or the original seq with `duplicate=True` (and
        `conflict=True` when the stored content differs: its bytes, or their digest;
        `digest` None: made from `raw` if the store needs it)."""

    @abstractmethod
    async def append_many(self, items: Sequence[EventItem], recvtime: str,
                          roots: Sequence[int] | None = None) -> list[AppendResult]:
        """`append` for many events at once, in order (seqs ascending): a publisher's
        batch of roots, or (`roots`, one per item, as `append`'s `root`) derived events
        such as the announcements of a commit. A repeat of an earlier item of the same
        call is a duplicate of it."""

    @abstractmethod
    async def set_routes(self, items: Sequence[RoutedRow]) -> None:
        """Record which routes each appended event matched and its target hits (the
        derived records later stages act on), with the event: (seq, route names, hits of
        that seq). A (route, target) hit twice is recorded once (the first hit)."""

    @abstractmethod
    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        """Record target hits on events whose routing is recorded already (a later
        hand-over), beside the hits they hold: a (route, target) an event holds already
        is not recorded again."""

    @abstractmethod
    async def root_use(self, root: int) -> RootUse:
        """What root event `root` has used of its descendant budget so far."""

    @abstractmethod
    async def add_root_use(self, changes: Sequence[tuple[int, int, bool]]) -> None:
        """Add (root, descendants, noticed) to each root's recorded use."""


class EventLog(ABC):
    """The event log of a backend. Reads are each their own short read transaction.

    Retention may delete old events in batches (never ones an unresolved todo item, an
    open delivery or a pending action job still refers to): `first_seq` says where the
    retained log starts, and a read after any seq returns what is retained above it."""

    @abstractmethod
    def writes(self, tx: Transaction) -> EventWrites:
        """The log's writes inside `tx`."""

    @abstractmethod
    async def last_seq(self) -> int:
        """The highest committed seq, 0 for an empty log."""

    @abstractmethod
    async def first_seq(self) -> int:
        """The lowest retained seq, 0 for an empty log."""

    @abstractmethod
    async def retained_from(self) -> int:
        """The seq the retained log starts at: every seq below it has been examined by
        retention, and removed unless something still needed it (1 when retention has
        removed nothing). A missing seq below it was removed; readers resuming below it
        are told so instead of silently skipping."""

    @abstractmethod
    async def get(self, seq: int) -> StoredEvent | None:
        """One event by seq."""

    @abstractmethod
    async def find(self, source: str, id: str) -> StoredEvent | None:
        """One event by its CloudEvents identity."""

    @abstractmethod
    async def read(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        type: str | None = None,
        source: str | None = None,
        subject: str | None = None,
        since: str | None = None,
        until: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        id: str | None = None,
        descending: bool = False,
        scan_to: int | None = None,
        narrow: Narrowing = (),
    ) -> list[StoredEvent]:
        """A page of events with seq > after (or < after when descending and after > 0),
        ordered by seq; `since`/`until` bound `recvtime` (stamps, until excluded);
        `scan_to` is the last seq the scan may reach in its direction (inclusive), so a
        filter no index serves examines a bounded range of the log; `narrow` may leave
        out events that cannot match the caller's filter (a store may ignore it)."""

    @abstractmethod
    async def count(self) -> int:
        """Number of stored events."""

    @abstractmethod
    async def targets_of(self, seq: int) -> list[TargetRecord]:
        """The route target hits recorded for an event."""
