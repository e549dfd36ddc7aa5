"""Side effects shared by webhooks and actions: dead letters into a todo queue, and the
`opsbus.action.recorded` stand-in for calls a replayed event must not make."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from broker.events import new_event
from broker.store.base_delivery import Delivery
from broker.store.records import StoredEvent, TargetRecord

if TYPE_CHECKING:
    from broker.bus import WriteContext

log = logging.getLogger(__name__)

DEADLETTERED = "opsbus.delivery.deadlettered"
RECORDED = "opsbus.action.recorded"
DELIVERY_SOURCE = "opsbus/delivery"
"""Source of the events about a subscription (dead letters, breaker changes), whose
`subject` names the subscription."""


def about_subscription(event: dict[str, Any]) -> str | None:
    """The subscription a bus event is about (its dead letters, its breaker changes)."""
    if event.get("source") == DELIVERY_SOURCE and isinstance(event.get("subject"), str):
        return str(event["subject"])
    return None


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
    _, stored = await ctx.publish(event, cause=cause)
    return stored.seq if stored else None


async def dead_letter(ctx: WriteContext, *, subscription: str, queue: str, delivery: Delivery,
                      event: StoredEvent, error: str | None) -> int | None:
    """Announce a dead letter (caused by the original event) and put it in front of a
    person: the announcement is handed to the dead-letter queue's target handler."""
    notice = new_event(
        time=ctx.recvtime, type=DEADLETTERED, source=DELIVERY_SOURCE, subject=subscription,
        data={"subscription": subscription, "delivery": delivery.id,
              "attempts": delivery.attempts, "last_status": delivery.last_status,
              "last_error": error or delivery.last_error, "seq": event.seq,
              "event": event.event},
    )
    _, stored = await ctx.publish(notice, cause=event)
    if stored is None:
        return None
    handler = ctx.bus.router.handlers.get("queue")
    if handler is None:
        log.warning("dead letter of delivery %s: no todo queues in this broker", delivery.id)
    else:
        detail = await handler(ctx, stored, f"subscription:{subscription}", queue)
        await ctx.tx.add_targets([TargetRecord(stored.seq, f"subscription:{subscription}",
                                               f"queue:{queue}", detail or {})])
    return stored.seq

