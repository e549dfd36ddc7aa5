"""The bus's own events are the broker's alone: `opsbus.*` types and `opsbus/*` sources
(todo changes, dead letters, action results, loop notices) are what the audit trail, the
console and automations trust, so a client cannot publish one.

The check sits at the edges where client events come in (the publish endpoint, source
plugins and plugin services, re-emit); the broker's own publishes go straight to the
bus and never meet it. The one exception is an administrator restoring an export
(`opsbus replay --restore`, header `Opsbus-Restore: true`): reserved events are then
stored with the extension `opsbusrestored: true`, so a restored audit event is never
mistaken for one the broker published.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from broker.errors import BadRequest, Forbidden
from broker.events import validate_event
from broker.numbers import flag

TYPE_PREFIX: Final = "opsbus."
SOURCE_PREFIX: Final = "opsbus/"
RESTORED: Final = "opsbusrestored"
"""Extension set on reserved events an administrator restored from an export."""
RESTORE_HEADER: Final = "Opsbus-Restore"
"""`true` on a publish: an administrator restores an export (reserved events allowed)."""


class ReservedEvent(Forbidden):
    """A client tried to publish an event only the broker may publish."""

    title = "Reserved for the broker"
    slug = "reserved-event"


def reserved_attribute(event: Mapping[str, Any]) -> str | None:
    """The attribute that makes `event` one of the broker's own (`type`, `source`, or the
    restore marker), or None for an ordinary event."""
    kind = event.get("type")
    if isinstance(kind, str) and (kind.startswith(TYPE_PREFIX) or kind == "opsbus"):
        return "type"
    source = event.get("source")
    if isinstance(source, str) and (source.startswith(SOURCE_PREFIX) or source == "opsbus"):
        return "source"
    if RESTORED in event:
        return RESTORED
    return None


def refusal(event: Mapping[str, Any], attribute: str, *, restorable: bool = False) -> str:
    """Why `event` is refused, in words for a problem document or a CLI line; with
    `restorable`, how an administrator restores an export instead."""
    if attribute == RESTORED:
        return (f"the {RESTORED} extension is set by the broker on events an administrator"
                f" restores from an export; a client cannot set it")
    value = str(event.get(attribute))[:80]
    why = (f"{attribute} {value!r} is reserved for the broker's own events (types opsbus.*,"
           f" sources opsbus/*): publish under a name of your own")
    if restorable:
        why += (f"; an administrator restoring an export sends {RESTORE_HEADER}: true"
                f" (opsbus replay --restore)")
    return why


def admit(events: list[dict[str, Any]], *, restore: bool, batch: bool
          ) -> list[dict[str, Any]]:
    """The events a client may publish: unchanged when none is reserved; reserved ones
    marked `opsbusrestored` when `restore` (the caller checked the administrator), else
    ReservedEvent naming the attribute (and the batch entry)."""
    admitted = events
    for index, event in enumerate(events):
        attribute = reserved_attribute(event)
        if attribute is None:
            continue
        if not restore:
            where = f"batch entry {index}: " if batch else ""
            raise ReservedEvent(where + refusal(event, attribute, restorable=True),
                                attribute=attribute,
                                index=index if batch else None)
        if admitted is events:
            admitted = list(events)
        # Validated again so the marker takes its place among the sorted extensions.
        admitted[index] = validate_event({**event, RESTORED: True})
    return admitted


def restore_requested(headers: Mapping[str, str]) -> bool:
    """Whether a publish asks to restore (`Opsbus-Restore: true`); 400 for a value that is
    neither true nor false."""
    raw = headers.get(RESTORE_HEADER)
    if raw is None:
        return False
    value = flag(raw.strip().lower())
    if value is None:
        raise BadRequest(f"header {RESTORE_HEADER} must be true or false, got {raw[:40]!r}",
                         parameter=RESTORE_HEADER)
    return value
