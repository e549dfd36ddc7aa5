"""Replayed events make no outbound calls: a webhook delivery or an action a replayed
event would trigger is recorded instead, as `opsbus.action.recorded` caused by it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.events import new_event

if TYPE_CHECKING:
    from broker.bus import StoredEvent, WriteContext

RECORDED = "opsbus.action.recorded"


def is_replay(event: dict[str, Any]) -> bool:
    """A replayed event that must not cause outbound calls (`replay` without
    `replaylive = true`; binary mode carries the flag as the string "true")."""
    if not event.get("replay"):
        return False
    live = event.get("replaylive")
    return not (live is True or (isinstance(live, str) and live.lower() == "true"))


async def record_request(ctx: WriteContext, cause: StoredEvent, *, source: str, target: str,
                         request: dict[str, Any]) -> int | None:
    """Publish what would have been sent, caused by the replayed event; its seq."""
    event = new_event(
        time=ctx.recvtime, type=RECORDED, source=source, subject=target,
        data={"target": target, "replay": cause.event.get("replay"), "request": request},
    )
    published = await ctx.publish(event, cause=cause, elide=True)
    return published.stored.seq if published.stored else None
