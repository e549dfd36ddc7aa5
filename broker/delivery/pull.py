"""Pull subscriptions: long-polled `receive` under a lease, and `ack`, `release`,
`reject`, `renew` by lease token. Leasing is decided in the store's write transaction, so
consumers share the work without duplicates while their leases hold."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.delivery.dead_letters import dead_letter
from broker.delivery.model import Delivery, LeasedDelivery, Outcome
from broker.delivery.repository import DeliveryRepository
from broker.delivery.subscriptions import Subscription, SubscriptionRegistry
from broker.errors import BadRequest, Conflict
from broker.metrics_delivery import DeliveryCounts
from broker.numbers import NumberError, whole_number
from broker.timeutil import later

if TYPE_CHECKING:
    from broker.bus import Bus, EventLog, WriteContext
    from broker.clock import Clock

MAX_BATCH = 100
MAX_WAIT_S = 60.0
MAX_LEASE_S = 12 * 3600.0
MAX_SETTLE = 1000
"""Most lease tokens one ack/release/reject/renew call names."""


def lease_id(token: Any) -> int:
    """The delivery id inside a lease token (`<id>.<attempt>.<random>`)."""
    if not isinstance(token, str):
        raise BadRequest("leases must be a list of lease tokens (strings)")
    try:
        return whole_number(token.split(".", 1)[0])
    except NumberError:
        shown = token if len(token) <= 60 else f"{token[:40]}… ({len(token)} characters)"
        raise BadRequest(f"{shown!r} is not a lease token (<id>.<attempt>.<random>)",
                         field="leases", lease=shown) from None


def message(item: LeasedDelivery) -> dict[str, Any]:
    """The API form of a leased event."""
    return {"lease": item.lease, "seq": item.event.seq,
            "delivery_count": item.delivery.attempts,
            "lease_expires_at": item.delivery.next_at, "event": item.event.event}


class PullService:
    """Receives and settles pull deliveries; `notify(name)` wakes long-polls after commit."""

    def __init__(self, bus: Bus, repo: DeliveryRepository, events: EventLog, clock: Clock,
                 poll_s: float, registry: SubscriptionRegistry,
                 paused: Callable[[str], bool], counts: DeliveryCounts) -> None:
        self.bus = bus
        self.repo = repo
        self.events = events
        self.clock = clock
        self.poll_s = poll_s
        self.counts = counts
        self.registry = registry
        self._paused = paused
        self._signals: dict[str, asyncio.Event] = {}
        self._closing = False

    def notify(self, name: str) -> None:
        signal = self._signals.pop(name, None)
        if signal is not None:
            signal.set()

    def notify_all(self) -> None:
        """Another process committed (replicas on PostgreSQL): every waiting receive
        looks again."""
        for name in list(self._signals):
            self.notify(name)

    def close(self) -> None:
        """Shutdown: every waiting receive returns what it has (nothing)."""
        self._closing = True
        for name in list(self._signals):
            self.notify(name)

    def _signal(self, name: str) -> asyncio.Event:
        # One event per generation: notify() sets it and drops it, so every waiter of that
        # generation wakes and the next waiter starts a fresh one.
        return self._signals.setdefault(name, asyncio.Event())

    async def receive(self, sub: Subscription, *, max_messages: int = 10, wait_s: float = 0,
                      lease_s: float | None = None) -> list[dict[str, Any]]:
        """Lease up to `max_messages` due events, waiting up to `wait_s` for the first."""
        if not 1 <= max_messages <= MAX_BATCH:
            raise BadRequest(f"max must be between 1 and {MAX_BATCH}")
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise BadRequest(f"wait_s must be between 0 and {MAX_WAIT_S:g}")
        lease = sub.lease_s if lease_s is None else lease_s
        if not 0 < lease <= MAX_LEASE_S:
            raise BadRequest(f"lease_s must be positive and at most {MAX_LEASE_S:g}")
        clock = self.clock
        deadline = clock.monotonic() + wait_s
        poll = self.poll_s
        while True:
            signal = self._signal(sub.name)  # taken before looking, so no wake-up is lost
            # A read first: idle long-polls must not keep the writer busy.
            due = await self.repo.next_due(sub.name)
            if due is not None and due <= clock.stamp() and not self._paused(sub.name):
                leased = await self.bus.run(
                    lambda ctx: self._lease(ctx, sub, max_messages, lease))
                if leased:
                    return [message(item) for item in leased]
                due = await self.repo.next_due(sub.name)
            remaining = deadline - clock.monotonic()
            if remaining <= 0 or self._closing:
                return []
            # Leases expiring and delayed releases become due without a commit to wake us.
            nap = min(remaining, poll)
            if due is not None and not self._paused(sub.name):
                nap = min(nap, max(0.005, clock.seconds_until(due)))
            await clock.wait(signal, nap)

    async def _lease(self, ctx: WriteContext, sub: Subscription, limit: int, lease_s: float
                     ) -> list[LeasedDelivery]:
        batch = await self.repo.writes(ctx.transaction).lease(
            sub.name, limit, self.clock.stamp(), lease_s, max_attempts=sub.max_deliveries)
        for item in batch.exhausted:
            await self._dead_letter(ctx, sub, item.delivery, item,
                                    f"not acknowledged after {item.delivery.attempts} deliveries")
        ctx.on_commit(functools.partial(self.counts.attempts.update,
                                        {sub.name: len(batch.leased)}))
        return batch.leased

    async def sweep(self) -> None:
        """Dead-letter expired leases that used their last delivery, even with no
        consumer asking, so status and dead-letter queues stay current."""
        now = self.clock.stamp()
        for sub in self.registry.pull():
            if await self.repo.count_exhausted(sub.name, sub.max_deliveries, now):
                await self.bus.run(functools.partial(self._drain_exhausted, sub=sub))

    async def _drain_exhausted(self, ctx: WriteContext, sub: Subscription) -> None:
        batch = await self.repo.writes(ctx.transaction).lease(
            sub.name, MAX_BATCH, self.clock.stamp(), 0.0, max_attempts=sub.max_deliveries,
            only_exhausted=True)
        for item in batch.exhausted:
            await self._dead_letter(ctx, sub, item.delivery, item,
                                    f"not acknowledged after {item.delivery.attempts} deliveries")

    async def settle(self, sub: Subscription, verb: str, tokens: Any, *,
                     delay_s: float = 0.0, lease_s: float | None = None) -> dict[str, Any]:
        """ack / release / reject / renew the given leases, all or nothing: if any lease
        is no longer held (expired, settled, or replaced by a redelivery) nothing changes
        and Conflict names those leases."""
        if not isinstance(tokens, list) or not tokens:
            raise BadRequest("leases must be a non-empty list of lease tokens", field="leases")
        if len(tokens) > MAX_SETTLE:
            raise BadRequest(f"at most {MAX_SETTLE} leases per call, got {len(tokens)}",
                             field="leases")
        ids = [lease_id(t) for t in tokens]
        outcome = {"ack": Outcome.ACKED, "release": Outcome.RELEASED,
                   "reject": Outcome.REJECTED, "renew": Outcome.RENEWED}[verb]
        extend = sub.lease_s if lease_s is None else lease_s
        if outcome is Outcome.RENEWED and not 0 < extend <= MAX_LEASE_S:
            raise BadRequest(f"lease_s must be positive and at most {MAX_LEASE_S:g}")
        if delay_s < 0:
            raise BadRequest("delay must not be negative")

        async def write(ctx: WriteContext) -> list[Delivery]:
            now = self.clock.stamp()
            writes = self.repo.writes(ctx.transaction)
            done: list[Delivery] = []
            lost: list[str] = []
            for token, delivery_id in zip(tokens, ids, strict=True):
                next_at = {Outcome.RELEASED: later(now, delay_s),
                           Outcome.RENEWED: later(now, extend)}.get(outcome)
                settled = await writes.settle(
                    delivery_id, token, outcome, now, next_at=next_at, require_live=True,
                    subscription=sub.name,
                    error="rejected by the consumer" if outcome is Outcome.REJECTED else None)
                if settled is None:
                    lost.append(token)
                else:
                    done.append(settled)
            if lost:
                raise Conflict(
                    f"{len(lost)} lease(s) no longer held (expired, already settled, or"
                    f" redelivered under a new lease); nothing was changed: {', '.join(lost)}",
                    leases=lost)
            if outcome is Outcome.REJECTED:
                for settled in done:
                    stored = await self.events.get(settled.seq)
                    if stored is not None:
                        await dead_letter(ctx, subscription=sub.name,
                                          queue=sub.dead_letter_queue, delivery=settled,
                                          event=stored, error="rejected by the consumer")
            return done

        done = await self.bus.run(write)
        if outcome in (Outcome.RELEASED, Outcome.REJECTED):
            self.counts.failures[sub.name] += len(done)
        if outcome is Outcome.REJECTED:
            self.counts.dead_letters[sub.name] += len(done)
        if outcome is Outcome.RELEASED:
            if delay_s == 0:
                self.notify(sub.name)
        answer: dict[str, Any] = {f"{outcome.value}": len(done)}
        if outcome is Outcome.RENEWED:
            answer["lease_expires_at"] = {d.lease: d.next_at for d in done}
        return answer

    async def _dead_letter(self, ctx: WriteContext, sub: Subscription, delivery: Delivery,
                           item: LeasedDelivery, error: str) -> None:
        await dead_letter(ctx, subscription=sub.name, queue=sub.dead_letter_queue,
                          delivery=delivery, event=item.event, error=error)
        ctx.on_commit(functools.partial(self.counts.dead_letters.update, [sub.name]))
