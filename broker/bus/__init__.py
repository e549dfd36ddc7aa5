"""The write path: the writer (group commit), the write context every unit of work gets,
the event log contract, and lineage. Everything that is written goes through here."""

from broker.bus.context import Publication, Routed, Routing, WriteContext
from broker.bus.log import (
    AppendResult,
    EventLog,
    EventWrites,
    StoredEvent,
    TargetRecord,
    canonical,
    digest_of,
)
from broker.bus.writer import Bus, Published, Transform, Transforms, UnitOfWork

__all__ = [
    "AppendResult", "Bus", "EventLog", "EventWrites", "Publication", "Published", "Routed",
    "Routing", "StoredEvent", "TargetRecord", "Transform", "Transforms", "UnitOfWork",
    "WriteContext", "canonical", "digest_of",
]
