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

from broker.delivery import breaker
from broker.delivery.breaker import BreakerState, SubscriptionHealth
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

RECORD_RETRY_S = 0.2
"""Pause before writing an attempt's result again after the store refused it."""

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
    """One per broker; `wake()` after a commit that created deliveries.

    Each pass reads the subscriptions' breakers from the store (they are shared with
    every other process on it): an open breaker claims nothing until its cool-down
    ends, then one probe, claimed by whichever process first moves the breaker to
    half-open in its claim transaction."""

    def __init__(self, bus: Bus, repo: DeliveryRepository, clock: Clock,
                 settings: DispatchSettings, registry: SubscriptionRegistry,
                 paused: Callable[[str], bool], counts: DeliveryCounts) -> None:
        super().__init__(bus, clock, settings)
        self.repo = repo
        self.registry = registry
        self.counts = counts
        self._paused = paused
        self._in_flight: Counter[str] = Counter()
        self._sending: dict[int, LeasedDelivery] = {}
        """Deliveries this process is sending, by id, under their newest lease: a lease
        that lapses while the call is still out (a stalled receiver, a clock moved on)
        is claimed again here, and the call in flight settles under the new lease
        instead of the event being sent a second time."""
        self.health: dict[str, SubscriptionHealth] = {}
        """The breakers as last read (each pass); the store has the truth."""

    def in_flight(self, name: str) -> int:
        return self._in_flight[name]

    def capacity(self, sub: Subscription, budget: int, now: str) -> int:
        """New attempts `sub` may start now: while its breaker is not closed, one probe
        once the cool-down ended (and only if this process has none in flight)."""
        if self._stopping or self._paused(sub.name) or sub.problem:
            return 0
        busy = self._in_flight[sub.name]
        free = (0 if busy else 1) if sub.ordered else sub.max_in_flight - busy
        health = self.health.get(sub.name)
        if health is not None and health.state is not BreakerState.CLOSED:
            free = min(free, 0 if busy or not breaker.probe_due(health, now) else 1)
        return max(0, min(free, budget))

    async def _pass(self) -> float:
        """Claim what is due and start sending it; seconds until the next pass."""
        wait = self.settings.poll_s
        budget = self.settings.concurrency - sum(self._in_flight.values())
        self.health = await self.repo.breakers()
        now = self.clock.stamp()
        due: list[tuple[Subscription, int]] = []
        for sub in self.registry.push():
            cooldown = breaker.wait_s(self.health.get(sub.name), now)
            if cooldown is not None:
                wait = min(wait, cooldown + 0.01)
            room = self.capacity(sub, budget, now)
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
                if item.delivery.id in self._sending:
                    self._sending[item.delivery.id] = item
                    continue
                self._sending[item.delivery.id] = item
                self._in_flight[sub.name] += 1
                self._spawn(self._deliver(sub, item),
                            f"deliver-{sub.name}-{item.delivery.id}")
        return 0 if full else wait

    async def _claim(self, ctx: WriteContext, due: list[tuple[Subscription, int]]
                     ) -> list[tuple[Subscription, list[LeasedDelivery], int]]:
        out = []
        writes = self.repo.writes(ctx.transaction)
        now = self.clock.stamp()
        lease_s_of = {sub.name: sub.timeout + LEASE_MARGIN_S for sub, _ in due}
        for sub, room in due:
            probing = None
            seen = self.health.get(sub.name)
            if seen is not None and seen.state is not BreakerState.CLOSED:
                # The probe: only if the stored breaker still lets one through (another
                # process may have taken it since this pass read it).
                current = await writes.breaker(sub.name)
                if current is not None and current.state is not BreakerState.CLOSED:
                    if not breaker.probe_due(current, now):
                        continue
                    probing = current
                    await writes.save_breaker(
                        breaker.start_probe(current, now, lease_s_of[sub.name]))
                    room = 1
            # A final attempt whose lease lapsed has no known outcome (its process died,
            # or could not record the answer in time): it is made once more rather than
            # dead-lettered, since its receiver may well have acknowledged it. A failed
            # extra attempt dead-letters (`_settle`); a second lapse does too.
            batch = await writes.lease(
                sub.name, room, now, lease_s_of[sub.name],
                max_attempts=sub.retry.max_attempts + 1, ordered=sub.ordered)
            if probing is not None and not batch.leased:
                await writes.save_breaker(probing)  # nothing to probe with after all
            for item in batch.exhausted:  # in flight when the broker stopped, last attempt
                await dead_letter(ctx, subscription=sub.name, queue=sub.dead_letter_queue,
                                  delivery=item.delivery, event=item.event,
                                  error=item.delivery.last_error or "attempts exhausted")
                self.stats["deadlettered"] += 1
                ctx.on_commit(functools.partial(self.counts.dead_letters.update, [sub.name]))
            out.append((sub, batch.leased, room))
        return out

    async def _deliver(self, sub: Subscription, item: LeasedDelivery) -> None:
        holding = True
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
            if not sub.ordered:
                # The call is over: its slot is free now, so the next claim joins this
                # settlement's group commit instead of waiting for it (the delivery stays
                # leased until settled, so nothing claims it twice). An ordered
                # subscription sends its next event only once this one is settled.
                holding = False
                self._release(sub)
            await self._settle(sub, item, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery %s to %s failed unexpectedly", item.delivery.id, sub.name)
        finally:
            self._sending.pop(item.delivery.id, None)
            if holding:
                self._release(sub)

    def _release(self, sub: Subscription) -> None:
        self._in_flight[sub.name] -= 1
        self._wake.set()

    async def _settle(self, sub: Subscription, item: LeasedDelivery,
                      result: OutboundResult) -> None:
        now = self.clock.stamp()
        delivery = item.delivery
        next_at = None
        error = result.error
        if result.ok:
            outcome = Outcome.DELIVERED
        elif result.retryable:
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
            writes = self.repo.writes(ctx.transaction)
            lease = self._sending.get(delivery.id, item).lease  # renewed by a re-claim
            settled = await writes.settle(
                delivery.id, lease, outcome, now, next_at=next_at,
                status=result.status, latency_ms=result.latency_ms, error=error)
            if settled is not None and outcome is Outcome.DEADLETTERED:
                await dead_letter(ctx, subscription=sub.name, queue=sub.dead_letter_queue,
                                  delivery=settled, event=item.event, error=error)
            await self._record_health(ctx, sub, result, now)

        # The receiver has answered: losing that answer to a passing store error (a
        # lock wait timing out on a loaded database) would let the lease expire and,
        # on the last attempt, dead-letter a delivery its receiver acknowledged. So the
        # write is tried again while the lease still holds; the lease token makes a
        # repeat of a write that did commit change nothing.
        while True:
            try:
                await self.bus.run(write)
                break
            except OpsbusError as exc:
                if self._stopping or self.clock.stamp() >= delivery.next_at:
                    # Shutting down, or too late: the lease expires, it is sent again.
                    log.warning("delivery %s not recorded: %s", delivery.id, exc.detail)
                    return
                log.warning("delivery %s not recorded yet, trying again: %s", delivery.id,
                            exc.detail)
            await self.clock.sleep(RECORD_RETRY_S)
        if outcome is Outcome.RETRY:
            self._wake.set()  # a pass may have run before this commit: it is due at next_at

    async def _record_health(self, ctx: WriteContext, sub: Subscription,
                             result: OutboundResult, now: str) -> None:
        """The attempt's effect on the shared breaker, decided on the stored record in
        the settling transaction; the process whose write suspends or resumes the
        subscription announces it, in the same transaction (so exactly once)."""
        if not (result.ok or result.retryable):
            return  # refused outright (4xx): says nothing about the receiver's health
        seen = self.health.get(sub.name)
        if result.ok and (seen is None or seen.clean):
            # The common case costs no read. A breaker another process opened since
            # this pass read it closes at its next probe instead.
            return
        writes = self.repo.writes(ctx.transaction)
        current = await writes.breaker(sub.name) or breaker.closed(sub.name, now)
        if result.ok:
            if current.clean:
                return
            changed, resumed = breaker.after_success(current, now)
            suspended = False
        else:
            changed, suspended = breaker.after_failure(
                current, result.error, now, threshold=sub.breaker_failures,
                cooldown_s=sub.breaker_cooldown)
            resumed = False
        await writes.save_breaker(changed)
        self.health[sub.name] = changed
        if suspended or resumed:
            await self._announce(ctx, sub, changed, suspended)

    async def _announce(self, ctx: WriteContext, sub: Subscription,
                        health: SubscriptionHealth, suspended: bool) -> None:
        what = "suspended" if suspended else "resumed"
        if suspended:
            log.warning("subscription %s suspended after %d failures: %s", sub.name,
                        health.consecutive_failures, health.last_error)
        else:
            log.warning("subscription %s resumed", sub.name)
        await ctx.publish(new_event(
            time=self.clock.stamp(), type=f"opsbus.subscription.{what}",
            source=DELIVERY_SOURCE, subject=sub.name,
            data={"subscription": sub.name,
                  "consecutive_failures": health.consecutive_failures,
                  "last_error": health.last_error, "cooldown_s": sub.breaker_cooldown},
        ))
