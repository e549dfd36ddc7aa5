"""Dead letters: a delivery given up is announced (`opsbus.delivery.deadlettered`, caused
by the event) and the announcement handed to the subscription's dead-letter queue, so a
failed automation lands in front of a person."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.events import new_event

if TYPE_CHECKING:
    from broker.bus import StoredEvent, WriteContext
    from broker.delivery.model import Delivery

DEADLETTERED = "opsbus.delivery.deadlettered"
DELIVERY_SOURCE = "opsbus/delivery"
"""Source of the events about a subscription (dead letters, breaker changes), whose
`subject` names the subscription."""


def about_subscription(event: dict[str, Any]) -> str | None:
    """The subscription a bus event is about (its dead letters, its breaker changes)."""
    if event.get("source") == DELIVERY_SOURCE and isinstance(event.get("subject"), str):
        return str(event["subject"])
    return None


async def dead_letter(ctx: WriteContext, *, subscription: str, queue: str, delivery: Delivery,
                      event: StoredEvent, error: str | None) -> int | None:
    """Announce a dead letter and hand it to the `queue:<queue>` target (the todos
    feature), recorded as coming from `subscription:<name>`; the announcement's seq
    (None when its root had used its descendant budget)."""
    notice = new_event(
        time=ctx.recvtime, type=DEADLETTERED, source=DELIVERY_SOURCE, subject=subscription,
        data={"subscription": subscription, "delivery": delivery.id,
              "attempts": delivery.attempts, "last_status": delivery.last_status,
              "last_error": error or delivery.last_error, "seq": event.seq,
              "event": event.event},
    )
    # The dead event rides along; when it makes the notice too large its data is elided
    # (the notice's `seq` still points at it).
    published = await ctx.publish(notice, cause=event, elide=True)
    if published.stored is None:
        return None
    await ctx.hand_over(published.stored, f"queue:{queue}", via=f"subscription:{subscription}")
    return published.seq
