"""The delivery feature as the rest of the broker sees it: the `subscription` target
handler, operator controls (pause, resume, retry) and status for the API."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broker.delivery import breaker as breakers
from broker.delivery.breaker import BreakerState, SubscriptionHealth
from broker.delivery.dead_letters import about_subscription
from broker.delivery.model import Delivery, DeliveryState, SubscriptionControl
from broker.delivery.pull import PullService
from broker.delivery.push import PushDispatcher, build_request
from broker.delivery.repository import DeliveryRepository
from broker.delivery.subscriptions import Subscription, SubscriptionRegistry, redacted
from broker.dispatcher import DispatchSettings
from broker.errors import BadRequest, Conflict, NotFound
from broker.metrics_delivery import DeliveryCounts
from broker.replayed import is_replay, record_request

if TYPE_CHECKING:
    from broker.bus import Bus, EventLog, StoredEvent, WriteContext
    from broker.clock import Clock
    from broker.config import ConfigObject

log = logging.getLogger(__name__)


class DeliveryService:
    """Owns the registry, the push dispatcher and the pull API of one broker."""

    def __init__(self, *, bus: Bus, repo: DeliveryRepository, events: EventLog,
                 clock: Clock, settings: DispatchSettings, environ: Mapping[str, str]) -> None:
        self.bus = bus
        self.repo = repo
        self.clock = clock
        self.settings = settings
        self.registry = SubscriptionRegistry(environ)
        self.controls: dict[str, SubscriptionControl] = {}
        self.counts = DeliveryCounts()
        self.push = PushDispatcher(bus, repo, clock, settings, self.registry, self.is_paused,
                                   self.counts)
        self.pull = PullService(bus, repo, events, clock, settings.poll_s, self.registry,
                                self.is_paused, self.counts)

    def is_paused(self, name: str) -> bool:
        control = self.controls.get(name)
        return control is not None and control.paused

    def on_config(self, objects: list[ConfigObject]) -> None:
        self.registry.load(objects)
        self.push.wake()

    def subscription(self, name: str) -> Subscription:
        sub = self.registry.get(name)
        if sub is None:
            raise NotFound(f"no subscription named {name!r}")
        return sub

    def pull_subscription(self, name: str) -> Subscription:
        sub = self.subscription(name)
        if sub.is_push:
            raise Conflict(f"subscription {name!r} is a push subscription; receive, ack,"
                           " release, reject and renew are for pull subscriptions")
        return sub

    # -- inside the event's transaction ------------------------------------------------
    async def on_target(self, ctx: WriteContext, stored: StoredEvent, route: str,
                        name: str) -> dict[str, Any]:
        """`subscription:<name>`: a delivery row in this transaction (or, for a replayed
        event and a webhook, the request it would have made, recorded instead)."""
        sub = self.registry.get(name)
        if sub is None:
            return {"error": f"no subscription named {name!r}"}
        if not sub.enabled:
            return {"skipped": "subscription disabled"}
        if about_subscription(stored.event) == name:
            # Its own dead letters and breaker events would feed the failure back to it.
            return {"skipped": "an event about this subscription"}
        if sub.is_push and is_replay(stored.event):
            request = build_request(sub, stored, f"replay_{stored.seq}", int(self.clock.epoch()))
            seq = await record_request(ctx, stored, source="opsbus/delivery",
                                       target=f"subscription:{name}",
                                       request=request.recorded())
            return {"recorded": seq}
        delivery_id = await self.repo.writes(ctx.transaction).add(name, stored.seq,
                                                                  self.clock.stamp())
        if delivery_id is None:
            return {"duplicate": True}
        ctx.on_commit(self.push.wake if sub.is_push
                      else functools.partial(self.pull.notify, name))
        return {"delivery": delivery_id}

    # -- services -------------------------------------------------------------------
    async def run_push(self) -> None:
        await self.refresh_controls()
        await self.push.run()

    async def run_sweeper(self) -> None:
        while True:
            await self.clock.sleep(self.settings.poll_s)
            try:
                await self.refresh_controls()
                await self.pull.sweep()
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("pull lease sweep failed")

    def wake_all(self) -> None:
        """Work may have been created by another process sharing the store: look now."""
        self.push.wake()
        self.pull.notify_all()

    async def refresh_controls(self) -> None:
        """Pauses made by other processes sharing the store (replicas on PostgreSQL);
        a newer local change is never replaced by an older reading."""
        for name, control in (await self.repo.controls()).items():
            known = self.controls.get(name)
            if known is None or control.updated_at > known.updated_at:
                self.controls[name] = control
                if not control.paused and known is not None and known.paused:
                    self.push.wake()
                    self.pull.notify(name)

    async def stop(self) -> None:
        self.pull.close()
        await self.push.stop(self.settings.shutdown_grace_s)

    # -- operator API ------------------------------------------------------------------
    def state_of(self, sub: Subscription, health: SubscriptionHealth | None) -> str:
        if not sub.enabled:
            return "disabled"
        if self.is_paused(sub.name):
            return "paused"
        if sub.problem:
            return "misconfigured"
        if health is not None and health.state is not BreakerState.CLOSED:
            return "suspended"
        return "active"

    async def status(self, name: str) -> dict[str, Any]:
        sub = self.subscription(name)
        last = await self.repo.last_error(name)
        # The stored breaker: the one every process sharing the store acts on.
        health = (await self.repo.breakers()).get(name) if sub.is_push else None
        doc: dict[str, Any] = {
            "name": name, "type": sub.type, "state": self.state_of(sub, health),
            "counts": await self.repo.counts(name),
            "last_error": None if last is None else {
                "error": last.last_error, "status": last.last_status, "delivery": last.id,
                "at": last.updated_at},
        }
        control = self.controls.get(name)
        if control is not None and control.paused:
            doc["paused_by"] = control.paused_by
            doc["paused_at"] = control.updated_at
        if sub.problem:
            doc["problem"] = sub.problem
        if sub.is_push:
            health = health or breakers.closed(name, self.clock.stamp())
            doc["in_flight"] = self.push.in_flight(name)
            doc["breaker"] = {"state": health.state.value,
                              "consecutive_failures": health.consecutive_failures,
                              "probe_in_s": breakers.wait_s(health, self.clock.stamp())}
        return doc

    async def describe(self, name: str) -> dict[str, Any]:
        obj = self.registry.objects.get(name)
        if obj is None:
            raise NotFound(f"no subscription named {name!r}")
        return {**redacted(obj.spec), "origin": obj.origin, "version": obj.version,
                "updated_at": obj.updated_at, "status": await self.status(name)}

    async def deliveries(self, name: str, state: str | None, after: int, limit: int
                         ) -> dict[str, Any]:
        self.subscription(name)
        if state is not None and state not in {s.value for s in DeliveryState}:
            raise BadRequest(f"state must be one of {', '.join(s.value for s in DeliveryState)}")
        rows = await self.repo.page(name, state, after, limit)
        attempts = await self.repo.attempts([d.id for d in rows])
        items = [{**d.to_dict(), "attempts_log": [a.to_dict() for a in attempts[d.id]]}
                 for d in rows]
        return {"deliveries": items, "next": rows[-1].id if len(rows) == limit else None}

    async def delivery(self, name: str, delivery_id: int) -> dict[str, Any]:
        found = await self.repo.get(delivery_id)
        if found is None or found.subscription != name:
            raise NotFound(f"subscription {name!r} has no delivery {delivery_id}")
        attempts = await self.repo.attempts([delivery_id])
        return {**found.to_dict(), "attempts_log": [a.to_dict() for a in attempts[found.id]]}

    async def retry(self, name: str, delivery_id: int) -> dict[str, Any]:
        """Operator retry of a dead-lettered delivery: due now, with a fresh budget."""
        sub = self.subscription(name)

        async def write(ctx: WriteContext) -> Delivery:
            current = await self.repo.get(delivery_id)
            if current is None or current.subscription != name:
                raise NotFound(f"subscription {name!r} has no delivery {delivery_id}")
            requeued = await self.repo.writes(ctx.transaction).requeue(delivery_id,
                                                                       self.clock.stamp())
            if requeued is None:
                raise Conflict(f"delivery {delivery_id} is {current.state.value}; only"
                               " dead-lettered deliveries can be retried")
            ctx.on_commit(self.push.wake if sub.is_push
                          else functools.partial(self.pull.notify, name))
            return requeued

        return (await self.bus.run(write)).to_dict()

    async def set_paused(self, name: str, paused: bool, by: str | None) -> dict[str, Any]:
        self.subscription(name)

        async def write(ctx: WriteContext) -> SubscriptionControl:
            writes = self.repo.writes(ctx.transaction)
            now = self.clock.stamp()
            control = await writes.set_paused(name, paused, by, now)
            health = None if paused else await writes.breaker(name)
            if health is not None and not health.clean:
                # An operator's resume also closes the breaker, for every process.
                await writes.save_breaker(breakers.closed(name, now))
            return control

        self.controls[name] = await self.bus.run(write)
        if not paused:
            self.push.wake()
            self.pull.notify(name)
        return await self.status(name)
