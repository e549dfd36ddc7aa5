"""Replayed events make no outbound calls: a webhook delivery or an action a replayed
event would trigger is recorded instead, as `opsbus.action.recorded` caused by it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.events import new_event
from broker.numbers import flag

if TYPE_CHECKING:
    from broker.bus import StoredEvent, WriteContext

RECORDED = "opsbus.action.recorded"


def is_replay(event: dict[str, Any]) -> bool:
    """A replayed event that must not cause outbound calls: `replay` set (a run id, or
    true) and not false, without `replaylive = true`. Binary mode carries booleans as the
    strings "true" and "false", read as CloudEvents spells them (a `ce-replay: false`
    header is not a replay)."""
    marker = event.get("replay")
    if not marker or flag(marker) is False:
        return False
    return flag(event.get("replaylive")) is not True


async def record_request(ctx: WriteContext, cause: StoredEvent, *, source: str, target: str,
                         request: dict[str, Any]) -> int | None:
    """Publish what would have been sent, caused by the replayed event; its seq."""
    event = new_event(
        time=ctx.recvtime, type=RECORDED, source=source, subject=target,
        data={"target": target, "replay": cause.event.get("replay"), "request": request},
    )
    published = await ctx.publish(event, cause=cause, elide=True)
    return published.stored.seq if published.stored else None
