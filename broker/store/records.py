"""Typed records the store hands out: rows never leave the store as tuples or dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


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


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What appending an event did: its seq, and whether it was already stored."""

    seq: int
    duplicate: bool
    conflict: bool = False
    """True when (source, id) was stored before with different content."""
    dropped: bool = False
    """Not stored: the root event it derives from has used its descendant budget."""


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """A named configuration object (route, queue, subscription, action) and where it
    came from: `file` (opsbus.toml, changed only by editing the file) or `api`."""

    kind: str
    name: str
    spec: dict[str, Any]
    origin: str
    version: int
    updated_at: str


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """A route target hit, recorded with the event in its transaction."""

    seq: int
    route: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
