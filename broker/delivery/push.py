"""The push dispatcher: claims due webhook deliveries from the store, sends them with
bounded concurrency, and records each attempt (retry, dead letter, circuit breaker).

Network I/O never happens inside a write transaction: a pass claims deliveries in one
short write, the calls run as tasks, and their results are settled together in one
write per batch (whatever answered while the previous batch was committing). A
subscription claims deliveries ahead of its free slots (`claim_ahead`), so a slot that
frees starts the next call at once instead of waiting for a claim's commit. A slow or
dead receiver only ever holds its own subscription's slots, never the writer or another
subscription.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.delivery import breaker
from broker.delivery.breaker import BreakerState, SubscriptionHealth
from broker.delivery.dead_letters import DELIVERY_SOURCE, dead_letter
from broker.delivery.model import OUTCOME_TEXT, Delivery, LeasedDelivery, Outcome, Settlement
from broker.delivery.repository import DeliveryRepository
from broker.delivery.signing import signature_headers
from broker.delivery.subscriptions import Subscription, SubscriptionRegistry
from broker.dispatcher import DispatchSettings, StoreDispatcher
from broker.errors import OpsbusError
from broker.events import new_event, to_binary
from broker.metrics_delivery import DeliveryCounts
from broker.outbound import (
    CallDeadlines,
    OutboundRequest,
    OutboundResult,
    send,
)
from broker.timeutil import later, seconds_between

if TYPE_CHECKING:

    from broker.bus import Bus, StoredEvent, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

RECORD_RETRY_S = 0.2
"""Pause before writing an attempt's result again after the store refused it."""

CLAIM_AHEAD = 64
"""Deliveries a subscription claims beyond its free slots: at least this many, or one
round of its slots if that is more. A claim (a write and its commit) then serves many
calls, and a call that ends starts the next without waiting for one. The queue is
topped up once half of it is sent, so a busy subscription claims about this many at a
time: at 16 a draining backlog cost a pass (breakers read, claim, commit) every 8-16
deliveries and ~10 % more broker instructions per delivery than at 64. A slow
receiver's queued deliveries have their leases renewed while they wait."""

LEASE_MARGIN_S = 5.0
"""A claim outlives the call's timeout by this much; after a crash the lease expires and
the delivery is due again."""

# Outcomes a delivery's settling tests, read from here: on this Python each read of an
# enum class's attribute goes through its metaclass's attribute hook (~1,200
# instructions), and a delivery made about eight such reads.
_DELIVERED = Outcome.DELIVERED
_DEADLETTERED = Outcome.DEADLETTERED
_SETTLED_ALONE = frozenset({Outcome.DEADLETTERED, Outcome.UNSENT})
"""Recorded one by one (`settle`), not with the batch's `settle_many`."""
_DUE_AGAIN = frozenset({Outcome.RETRY, Outcome.UNSENT})
"""Leave the delivery due again: a pass may be needed once they are recorded."""


def build_request(sub: Subscription, stored: StoredEvent, msg_id: str,
                  timestamp: int) -> OutboundRequest:
    """The webhook request for one delivery (binary or structured, signed if a secret).
    `msg_id` is the Standard Webhooks message id, the same on every retry; `timestamp`
    the Unix time it is signed at (unused without a secret)."""
    url, static, secrets = sub.request_parts
    if sub.content_mode == "structured":
        body = stored.raw
        headers = {**static, "Content-Type": "application/cloudevents+json"}
    else:
        ce_headers, body = to_binary(stored.event)
        # The rendering's own dict is the request's when there are no static headers.
        headers = {**static, **ce_headers} if static else ce_headers
    if sub.secret is not None:
        headers.update(signature_headers(sub.secret, msg_id, timestamp, body))
    return OutboundRequest("POST", url, headers, body, secrets)


def claim_ahead(sub: Subscription) -> int:
    """How many deliveries `sub` keeps claimed beyond its free slots."""
    return 0 if sub.ordered else max(CLAIM_AHEAD, sub.max_in_flight)


@dataclass(slots=True)
class _Settlement:
    """An attempt's result waiting to be recorded (with others, in one write)."""

    sub: Subscription
    item: LeasedDelivery
    result: OutboundResult
    outcome: Outcome
    now: str | None
    """When the attempt ended; None for a success, stamped when its batch is recorded
    (one reading of the clock per batch, not one per delivery)."""
    next_at: str | None
    error: str | None
    done: asyncio.Future[None] | None = None
    """Set once recorded (or not recordable), for a sender that waits for it (an
    ordered subscription's); None when no one does."""


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
        """Calls out per subscription (its slots in use)."""
        self._queued: dict[str, deque[LeasedDelivery]] = {}
        """Claimed ahead, waiting for a free slot of their subscription."""
        self._held: dict[int, LeasedDelivery] = {}
        """Every delivery this process holds a lease on (queued, being sent, or waiting
        for its result to be recorded), by id, under its newest lease. Each pass renews
        the leases about to lapse (a stalled receiver, a clock moved on): a call still
        out must not be claimed again, which would count an attempt that was never
        made and, on the last one, dead-letter a delivery whose call may yet succeed."""
        self._to_settle: list[_Settlement] = []
        self._deadlines = CallDeadlines()
        """The calls' timeouts, on one timer."""
        self._settling = False
        self._more: set[str] = set()
        """Subscriptions whose last claim took all it asked for: while draining a
        backlog, the next pass claims without first reading when one is due."""
        self.health: dict[str, SubscriptionHealth] = {}
        """The breakers as last read; the store has the truth."""
        self._look_all = True
        self._look_by = 0.0
        self._due_at: dict[str, str | None] = {}
        """When each subscription's next delivery is due, as read since the last full
        look: nothing can come due earlier without a `wake()` (new deliveries, a resume,
        another process's commit) or a result recorded here, which forget it."""

    def wake(self) -> None:
        self._look_all = True
        super().wake()

    def in_flight(self, name: str) -> int:
        return self._in_flight[name]

    def _may_send(self, sub: Subscription) -> bool:
        """Whether `sub` may still send what it claimed ahead: not stopping, paused,
        misconfigured or suspended."""
        health = self.health.get(sub.name)
        return not (self._stopping or self._paused(sub.name) or sub.problem
                    or (health is not None and health.state is not BreakerState.CLOSED))

    def capacity(self, sub: Subscription, budget: int, now: str) -> int:
        """New deliveries `sub` may claim now: its free slots and `claim_ahead` more
        (an ordered subscription: one at a time); while its breaker is not closed,
        one probe once the cool-down ended (and only if this process holds none)."""
        if self._stopping or self._paused(sub.name) or sub.problem:
            return 0
        busy = self._in_flight[sub.name] + len(self._queued.get(sub.name, ()))
        free = (0 if busy else 1) if sub.ordered else \
            sub.max_in_flight + claim_ahead(sub) - busy
        health = self.health.get(sub.name)
        if health is not None and health.state is not BreakerState.CLOSED:
            free = min(free, 0 if busy or not breaker.probe_due(health, now) else 1)
        return max(0, min(free, budget))

    async def _pass(self) -> float:
        """Renew the leases about to lapse, claim what is due and start sending it;
        seconds until the next pass."""
        wait = self.settings.poll_s
        budget = 2 * self.settings.concurrency - len(self._held)
        if self._look_all or self.clock.monotonic() >= self._look_by:
            # A full look: the breakers and every subscription's next due time, read
            # again. Between looks the passes that top up a draining subscription's
            # queue (every few dozen deliveries) read neither: each was a query per
            # pass, per idle subscription.
            self._look_all = False
            self._look_by = self.clock.monotonic() + self.settings.poll_s
            self._due_at.clear()
            self.health = await self.repo.breakers()
        now = self.clock.stamp()
        renew, renew_in = self._renewals(now)
        if renew_in is not None:
            wait = min(wait, renew_in)
        due: list[tuple[Subscription, int]] = []
        for sub in self.registry.push():
            cooldown = breaker.wait_s(self.health.get(sub.name), now)
            room = self.capacity(sub, budget, now)
            if cooldown is not None and (cooldown > 0 or room > 0):
                # An ended cool-down re-arms a pass only while this process may take the
                # probe (its claim reads the breaker as stored and keeps what it read).
                # One it may not take now (its own calls still out, nothing left of the
                # budget) waits for the wake those bring: a timer at an ended cool-down
                # would fire at once, again and again.
                wait = min(wait, max(cooldown, 0.0) + 0.01)
            if room <= 0:
                continue
            if sub.name in self._more:  # its last claim was full: more were due then
                due.append((sub, room))
                budget -= room
                continue
            if sub.name in self._due_at:
                next_due = self._due_at[sub.name]
            else:
                next_due = self._due_at[sub.name] = await self.repo.next_due(
                    sub.name, sub.ordered)
            if next_due is None:
                continue
            if next_due <= now:
                due.append((sub, room))
                budget -= room
                del self._due_at[sub.name]  # the claim changes it
            else:
                wait = min(wait, seconds_between(now, next_due))
        if not due and not renew:
            return wait
        try:
            claimed = await self.bus.run(lambda ctx: self._claim(ctx, due, renew))
        except OpsbusError as exc:
            log.warning("could not claim deliveries: %s", exc.detail)
            return min(wait, RECORD_RETRY_S) if renew else wait
        full = False
        for sub, leased, room in claimed:
            full = full or len(leased) == room
            if len(leased) == room:
                self._more.add(sub.name)
            else:
                self._more.discard(sub.name)
            queue = self._queued.setdefault(sub.name, deque())
            for item in leased:
                if item.delivery.id in self._held:  # taken back after another's claim
                    self._held[item.delivery.id] = item
                    continue
                self._held[item.delivery.id] = item
                queue.append(item)
            self._start(sub)
        return 0 if full else wait

    def _renewals(self, now: str) -> tuple[list[LeasedDelivery], float | None]:
        """The held leases that lapse within the margin, and seconds until the next
        one does (None when nothing is held)."""
        soon = later(now, LEASE_MARGIN_S)
        renew = [item for item in self._held.values() if item.delivery.next_at <= soon]
        kept = [item.delivery.next_at for item in self._held.values()
                if item.delivery.next_at > soon]
        if not kept:
            return renew, None
        return renew, max(0.0, seconds_between(now, min(kept)) - LEASE_MARGIN_S)

    async def _renew(self, ctx: WriteContext, items: list[LeasedDelivery], now: str
                     ) -> None:
        """Extend the leases of deliveries this process still holds. One another
        process claimed meanwhile (it lapsed) is theirs now: dropped here, so it is
        not sent from here and its call in flight records nothing."""
        writes = self.repo.writes(ctx.transaction)
        for item in items:
            sub = self.registry.get(item.delivery.subscription)
            lease_s = (sub.timeout if sub is not None else Subscription.timeout) \
                + LEASE_MARGIN_S
            renewed = await writes.settle(item.delivery.id, item.lease, Outcome.RENEWED,
                                          now, next_at=later(now, lease_s))

            def apply(item: LeasedDelivery = item, renewed: Delivery | None = renewed
                      ) -> None:
                if self._held.get(item.delivery.id) is not item:
                    return  # settled meanwhile
                if renewed is None:
                    del self._held[item.delivery.id]
                    queue = self._queued.get(item.delivery.subscription)
                    if queue is not None and item in queue:
                        queue.remove(item)
                else:
                    self._held[item.delivery.id] = LeasedDelivery(renewed, item.event)

            ctx.on_commit(apply)

    async def _claim(self, ctx: WriteContext, due: list[tuple[Subscription, int]],
                     renew: list[LeasedDelivery]
                     ) -> list[tuple[Subscription, list[LeasedDelivery], int]]:
        out = []
        writes = self.repo.writes(ctx.transaction)
        now = self.clock.stamp()
        if renew:
            await self._renew(ctx, renew, now)
        lease_s_of = {sub.name: sub.timeout + LEASE_MARGIN_S for sub, _ in due}
        for sub, room in due:
            probing = None
            # The breaker as stored now, not as the pass read it: a failure recorded
            # since (here or by another process) may have opened it, and another
            # process may have taken the probe.
            current = await writes.breaker(sub.name)
            if current is not None:
                self.health[sub.name] = current  # fresher than the pass's read
            if current is not None and current.state is not BreakerState.CLOSED:
                held = self._in_flight[sub.name] + len(self._queued.get(sub.name, ()))
                if held or not breaker.probe_due(current, now):
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

    def _start(self, sub: Subscription) -> None:
        """Start senders for `sub`'s queued deliveries while it has free slots."""
        queue = self._queued.get(sub.name)
        limit = 1 if sub.ordered else sub.max_in_flight
        while queue and self._in_flight[sub.name] < limit:
            item = queue.popleft()
            self._in_flight[sub.name] += 1
            self._spawn(self._sender(sub, item), f"deliver-{sub.name}-{item.delivery.id}")

    def _next(self, sub: Subscription) -> LeasedDelivery | None:
        """The next queued delivery for a sender whose call is over (its slot passes on
        without a claim in between); None frees the slot. A queue the subscription may
        no longer send from (paused, breaker open, stopping) is given back."""
        queue = self._queued.get(sub.name)
        if not queue:
            return None
        if not self._may_send(sub):
            self._give_back(sub)
            return None
        item = queue.popleft()
        if len(queue) <= claim_ahead(sub) // 2:
            self._wake.set()  # claim more while these are sent
        return item

    def _give_back(self, sub: Subscription) -> None:
        """Release the deliveries claimed ahead that were never sent: due again now."""
        queue = self._queued.pop(sub.name, deque())
        now = self.clock.stamp()
        for item in queue:
            self._enqueue(_Settlement(sub, item, OutboundResult(None, 0.0), Outcome.UNSENT,
                                      now, now, None))

    async def _sender(self, sub: Subscription, item: LeasedDelivery | None) -> None:
        """Send `item`, then the subscription's next queued deliveries, on one slot."""
        try:
            while item is not None:
                try:
                    result = await self._call(sub, item)
                    settled = self._settle(sub, item, result)
                    if settled is not None:  # ordered: the next is sent once this is recorded
                        await settled
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("delivery %s to %s failed unexpectedly", item.delivery.id,
                                  sub.name)
                    self._held.pop(item.delivery.id, None)
                current = self.registry.get(sub.name)
                if current is None or not current.is_push or not current.enabled:
                    self._give_back(sub)  # removed or disabled since it was claimed
                    item = None
                else:
                    sub = current  # a changed URL, secret or timeout applies from now
                    item = self._next(sub)
        finally:
            self._in_flight[sub.name] -= 1
            self._wake.set()

    async def _call(self, sub: Subscription, item: LeasedDelivery) -> OutboundResult:
        assert self._session is not None
        try:
            # The signing time, read only when there is a signature to make.
            request = build_request(sub, item.event, f"dlv_{item.delivery.id}",
                                    int(self.clock.epoch()) if sub.secret is not None else 0)
        except OpsbusError as exc:  # data that cannot be rendered in binary mode
            return OutboundResult(None, 0.0, error=exc.detail, refused=True)
        return await send(self._session, request, timeout=sub.timeout, now=self.clock.epoch,
                          deadlines=self._deadlines)

    def _settle(self, sub: Subscription, item: LeasedDelivery, result: OutboundResult
                ) -> asyncio.Future[None] | None:
        """Decide the attempt's outcome and queue it to be recorded; for an ordered
        subscription, a future done once it is (or could not be)."""
        delivery = item.delivery
        now = next_at = None
        error = result.error
        if result.ok:
            outcome = _DELIVERED
        elif result.retryable:
            now = self.clock.stamp()
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
            now = self.clock.stamp()
            outcome = Outcome.DEADLETTERED
        self.stats[OUTCOME_TEXT[outcome]] += 1
        self.counts.attempts[sub.name] += 1
        if outcome is not _DELIVERED:
            self.counts.failures[sub.name] += 1
        if outcome is _DEADLETTERED:
            self.counts.dead_letters[sub.name] += 1
        settlement = _Settlement(sub, item, result, outcome, now, next_at, error,
                                 asyncio.get_running_loop().create_future()
                                 if sub.ordered else None)
        self._enqueue(settlement)
        return settlement.done

    def _enqueue(self, settlement: _Settlement) -> None:
        self._to_settle.append(settlement)
        if not self._settling:
            self._settling = True
            self._spawn(self._settler(), "settle-deliveries")

    async def _settler(self) -> None:
        """Record the queued results, all that arrived meanwhile in one write each time:
        while one batch commits, the next one gathers."""
        try:
            while self._to_settle:
                batch, self._to_settle = self._to_settle, []
                await self._record(batch)
        finally:
            self._settling = False
            if self._to_settle:  # cancelled with results still queued: not recorded
                for settlement in self._to_settle:
                    self._finish(settlement)
                self._to_settle = []

    async def _record(self, batch: list[_Settlement]) -> None:
        # The receiver has answered: losing that answer to a passing store error (a
        # lock wait timing out on a loaded database) would let the lease expire and,
        # on the last attempt, dead-letter a delivery its receiver acknowledged. So the
        # write is tried again while the lease still holds; the lease token makes a
        # repeat of a write that did commit change nothing.
        pending = batch
        try:
            while pending:
                try:
                    await self.bus.run(functools.partial(self._write, pending))
                    break
                except OpsbusError as exc:
                    now = self.clock.stamp()
                    kept = []
                    for s in pending:
                        if self._stopping or now >= self._lease_of(s.item).delivery.next_at:
                            # Shutting down, or too late: the lease expires, it is sent again.
                            log.warning("delivery %s not recorded: %s", s.item.delivery.id,
                                        exc.detail)
                        else:
                            kept.append(s)
                    if kept:
                        log.warning("%d deliveries not recorded yet, trying again: %s",
                                    len(kept), exc.detail)
                    pending = kept
                except Exception:
                    if len(pending) == 1:
                        raise
                    # One result the store refuses must not lose the others' answers.
                    log.exception("recording %d deliveries together failed; one by one",
                                  len(pending))
                    for settlement in pending:
                        try:
                            await self._record([settlement])
                        except Exception:
                            log.exception("delivery %s could not be recorded",
                                          settlement.item.delivery.id)
                    return
                if pending:
                    await self.clock.sleep(RECORD_RETRY_S)
        finally:
            for settlement in batch:
                self._finish(settlement)
                # A retry, a delivery given back, or (ordered) the next in line may now
                # be due earlier than last read.
                self._due_at.pop(settlement.sub.name, None)
        if any(s.outcome in _DUE_AGAIN for s in batch):
            self._wake.set()  # a pass may have run before this commit: due at next_at

    def _lease_of(self, item: LeasedDelivery) -> LeasedDelivery:
        """The delivery under its newest lease (a renewal may have replaced `item`'s)."""
        return self._held.get(item.delivery.id, item)

    def _finish(self, settlement: _Settlement) -> None:
        self._held.pop(settlement.item.delivery.id, None)
        if settlement.done is not None and not settlement.done.done():
            settlement.done.set_result(None)

    async def stop(self, grace: float = 5.0) -> None:
        """Give back what was claimed ahead and never sent (due again at once, for
        whichever process runs next), then stop as every dispatcher does."""
        self._stopping = True
        for name in list(self._queued):
            sub = self.registry.get(name)
            if sub is not None:
                self._give_back(sub)
        await super().stop(grace)

    async def _write(self, batch: list[_Settlement], ctx: WriteContext) -> None:
        writes = self.repo.writes(ctx.transaction)
        plain = []
        stamp = self.clock.stamp()
        for s in batch:
            now = s.now or stamp
            lease = self._lease_of(s.item).lease
            if s.outcome not in _SETTLED_ALONE:
                plain.append(Settlement(
                    s.item.delivery.id, lease, s.outcome, now, s.next_at,
                    s.result.status, s.result.latency_ms, s.error))
                continue
            settled = await writes.settle(
                s.item.delivery.id, lease, s.outcome, now, next_at=s.next_at,
                status=s.result.status, latency_ms=s.result.latency_ms, error=s.error)
            if settled is not None and s.outcome is _DEADLETTERED:
                await dead_letter(ctx, subscription=s.sub.name, queue=s.sub.dead_letter_queue,
                                  delivery=settled, event=s.item.event, error=s.error)
        if plain:
            await writes.settle_many(plain)
        for s in batch:
            if s.outcome is not Outcome.UNSENT and self._moves_breaker(s.sub, s.result):
                await self._record_health(ctx, s.sub, s.result, s.now or stamp)

    def _moves_breaker(self, sub: Subscription, result: OutboundResult) -> bool:
        """Whether the attempt may change the shared breaker: not a refusal (a 4xx says
        nothing about the receiver's health), nor a success while the breaker is clean
        as last read. The common case is decided here, with no read and no coroutine; a
        breaker another process opened since this pass read it closes at its next probe
        instead."""
        if result.ok:
            seen = self.health.get(sub.name)
            return seen is not None and not seen.clean
        return result.retryable

    async def _record_health(self, ctx: WriteContext, sub: Subscription,
                             result: OutboundResult, now: str) -> None:
        """The attempt's effect on the shared breaker (one `_moves_breaker` allows),
        decided on the stored record in the settling transaction; the process whose
        write suspends or resumes the subscription announces it, in the same
        transaction (so exactly once)."""
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
