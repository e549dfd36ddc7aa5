"""The push dispatcher: claims due webhook deliveries from the store, sends them with
bounded concurrency, and records each attempt (retry, dead letter, circuit breaker).

Network I/O never happens inside a write transaction: a pass claims deliveries in one
short write, the calls run as tasks, and each result is settled in its own write (which
group commit batches). A slow or dead receiver only ever holds its own subscription's
slots, never the writer or another subscription.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import yarl

from broker.delivery.breaker import CircuitBreaker
from broker.delivery.dead_letters import DELIVERY_SOURCE, dead_letter
from broker.delivery.model import LeasedDelivery, Outcome
from broker.delivery.repository import DeliveryRepository
from broker.delivery.signing import signature_headers
from broker.delivery.subscriptions import Subscription, SubscriptionRegistry
from broker.dispatcher import DispatchSettings, StoreDispatcher
from broker.errors import OpsbusError
from broker.events import new_event, to_binary
from broker.metrics_delivery import DeliveryCounts
from broker.outbound import (
    OutboundRequest,
    OutboundResult,
    secret_headers,
    send,
)
from broker.timeutil import later, seconds_between

if TYPE_CHECKING:

    from broker.bus import Bus, StoredEvent, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 5.0
"""A claim outlives the call's timeout by this much; after a crash the lease expires and
the delivery is due again."""


def build_request(sub: Subscription, stored: StoredEvent, msg_id: str,
                  timestamp: int) -> OutboundRequest:
    """The webhook request for one delivery (binary or structured, signed if a secret).
    `msg_id` is the Standard Webhooks message id, the same on every retry; `timestamp`
    the Unix time it is signed at."""
    event = stored.event
    headers: dict[str, str] = dict(sub.headers)
    if sub.content_mode == "structured":
        body = stored.raw
        headers["Content-Type"] = "application/cloudevents+json"
    else:
        ce_headers, body = to_binary(event)
        headers.update(ce_headers)
    if sub.secret is not None:
        headers.update(signature_headers(sub.secret, msg_id, timestamp, body))
    return OutboundRequest("POST", str(yarl.URL(sub.url)), headers, body,
                           secret_headers(headers))


class PushDispatcher(StoreDispatcher):
    """One per broker; `wake()` after a commit that created deliveries."""

    def __init__(self, bus: Bus, repo: DeliveryRepository, clock: Clock,
                 settings: DispatchSettings, registry: SubscriptionRegistry,
                 paused: Callable[[str], bool], counts: DeliveryCounts) -> None:
        super().__init__(bus, clock, settings)
        self.repo = repo
        self.registry = registry
        self.counts = counts
        self._paused = paused
        self._in_flight: Counter[str] = Counter()
        self.breakers: dict[str, CircuitBreaker] = {}

    def in_flight(self, name: str) -> int:
        return self._in_flight[name]

    def breaker(self, sub: Subscription) -> CircuitBreaker:
        current = self.breakers.get(sub.name)
        if current is None:
            current = self.breakers[sub.name] = CircuitBreaker(sub.breaker_failures,
                                                               sub.breaker_cooldown)
        current.threshold, current.cooldown = sub.breaker_failures, sub.breaker_cooldown
        return current

    def capacity(self, sub: Subscription, budget: int) -> int:
        """New attempts `sub` may start now."""
        if self._stopping or self._paused(sub.name) or sub.problem:
            return 0
        busy = self._in_flight[sub.name]
        free = (0 if busy else 1) if sub.ordered else sub.max_in_flight - busy
        permits = self.breaker(sub).permits(busy, self.clock.monotonic())
        if permits is not None:
            free = min(free, permits)
        return max(0, min(free, budget))

    async def _pass(self) -> float:
        """Claim what is due and start sending it; seconds until the next pass."""
        wait = self.settings.poll_s
        budget = self.settings.concurrency - sum(self._in_flight.values())
        now = self.clock.stamp()
        due: list[tuple[Subscription, int]] = []
        for sub in self.registry.push():
            cooldown = self.breaker(sub).wait_s(self.clock.monotonic())
            if cooldown is not None:
                wait = min(wait, cooldown + 0.01)
            room = self.capacity(sub, budget)
            if room <= 0:
                continue
            next_due = await self.repo.next_due(sub.name, sub.ordered)
            if next_due is None:
                continue
            if next_due <= now:
                due.append((sub, room))
                budget -= room
            else:
                wait = min(wait, seconds_between(now, next_due))
        if not due:
            return wait
        try:
            claimed = await self.bus.run(lambda ctx: self._claim(ctx, due))
        except OpsbusError as exc:
            log.warning("could not claim deliveries: %s", exc.detail)
            return wait
        full = False
        for sub, leased, room in claimed:
            full = full or len(leased) == room
            for item in leased:
                self._in_flight[sub.name] += 1
                self._spawn(self._deliver(sub, item),
                            f"deliver-{sub.name}-{item.delivery.id}")
        return 0 if full else wait

    async def _claim(self, ctx: WriteContext, due: list[tuple[Subscription, int]]
                     ) -> list[tuple[Subscription, list[LeasedDelivery], int]]:
        out = []
        for sub, room in due:
            batch = await self.repo.writes(ctx.transaction).lease(
                sub.name, room, self.clock.stamp(), sub.timeout + LEASE_MARGIN_S,
                max_attempts=sub.retry.max_attempts, ordered=sub.ordered)
            for item in batch.exhausted:  # in flight when the broker stopped, last attempt
                await dead_letter(ctx, subscription=sub.name, queue=sub.dead_letter_queue,
                                  delivery=item.delivery, event=item.event,
                                  error=item.delivery.last_error or "attempts exhausted")
                self.stats["deadlettered"] += 1
                ctx.on_commit(functools.partial(self.counts.dead_letters.update, [sub.name]))
            out.append((sub, batch.leased, room))
        return out

    async def _deliver(self, sub: Subscription, item: LeasedDelivery) -> None:
        try:
            assert self._session is not None
            try:
                request = build_request(sub, item.event, f"dlv_{item.delivery.id}",
                                        int(self.clock.epoch()))
            except OpsbusError as exc:  # data that cannot be rendered in binary mode
                result = OutboundResult(None, 0.0, error=exc.detail, refused=True)
            else:
                result = await send(self._session, request, timeout=sub.timeout,
                                    now=self.clock.epoch)
            await self._settle(sub, item, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery %s to %s failed unexpectedly", item.delivery.id, sub.name)
        finally:
            self._in_flight[sub.name] -= 1
            self._wake.set()

    async def _settle(self, sub: Subscription, item: LeasedDelivery,
                      result: OutboundResult) -> None:
        now = self.clock.stamp()
        delivery = item.delivery
        breaker = self.breaker(sub)
        suspended = resumed = False
        next_at = None
        error = result.error
        if result.ok:
            outcome = Outcome.DELIVERED
            resumed = breaker.success()
        elif result.retryable:
            suspended = breaker.failure(error, self.clock.monotonic())
            delay = sub.retry.delay(delivery.round_attempts)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
            next_at = later(now, delay)
            if delivery.round_attempts >= sub.retry.max_attempts:
                outcome, error = Outcome.DEADLETTERED, f"gave up after " \
                    f"{delivery.round_attempts} attempts: {error}"
            elif next_at > later(delivery.first_at, sub.retry.max_age):
                outcome, error = Outcome.DEADLETTERED, f"gave up at max_age: {error}"
            else:
                outcome = Outcome.RETRY
        else:
            outcome = Outcome.DEADLETTERED
        self.stats[outcome.value] += 1
        self.counts.attempts[sub.name] += 1
        if outcome is not Outcome.DELIVERED:
            self.counts.failures[sub.name] += 1
        if outcome is Outcome.DEADLETTERED:
            self.counts.dead_letters[sub.name] += 1

        async def write(ctx: WriteContext) -> None:
            settled = await self.repo.writes(ctx.transaction).settle(
                delivery.id, item.lease, outcome, now, next_at=next_at,
                status=result.status, latency_ms=result.latency_ms, error=error)
            if settled is not None and outcome is Outcome.DEADLETTERED:
                await dead_letter(ctx, subscription=sub.name, queue=sub.dead_letter_queue,
                                  delivery=settled, event=item.event, error=error)

        try:
            await self.bus.run(write)
        except OpsbusError as exc:  # shutting down: the lease expires, it is sent again
            log.warning("delivery %s not recorded: %s", delivery.id, exc.detail)
        if suspended:
            await self._announce(sub, "suspended", breaker)
        elif resumed:
            await self._announce(sub, "resumed", breaker)

    async def _announce(self, sub: Subscription, what: str, breaker: CircuitBreaker) -> None:
        if what == "suspended":
            log.warning("subscription %s suspended after %d failures: %s", sub.name,
                        breaker.consecutive_failures, breaker.last_error)
        else:
            log.warning("subscription %s resumed", sub.name)
        event = new_event(
            time=self.clock.stamp(), type=f"opsbus.subscription.{what}",
            source=DELIVERY_SOURCE, subject=sub.name,
            data={"subscription": sub.name, "consecutive_failures":
                  breaker.consecutive_failures if what == "suspended" else 0,
                  "last_error": breaker.last_error, "cooldown_s": sub.breaker_cooldown},
        )
        try:
            await self.bus.publish([event])
        except OpsbusError as exc:
            log.warning("could not publish %s: %s", event["type"], exc.detail)
