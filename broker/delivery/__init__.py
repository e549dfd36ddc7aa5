"""Delivery: push subscriptions (webhooks) and pull subscriptions, run from the store.

The feature registers the `subscriptions` configuration kind, the `subscription:<name>`
route target (a delivery row in the event's transaction), each subscription's own
filter as an implicit route, the push dispatcher and the pull sweeper. A delivery given
up becomes a dead letter handed to the subscription's todo queue. Its records and
repository contract are `model` and `repository`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from broker.config import Kind
from broker.delivery.service import DeliveryService
from broker.delivery.subscriptions import implicit_routes, validate_subscription
from broker.errors import OpsbusError
from broker.metrics_delivery import register_delivery_metrics

if TYPE_CHECKING:
    from broker.bus import Bus, EventLog
    from broker.clock import Clock
    from broker.delivery.repository import DeliveryRepository
    from broker.dispatcher import DispatchSettings
    from broker.wiring import Wiring

__all__ = ["Deliveries", "DeliveryService"]

log = logging.getLogger(__name__)


class Deliveries:
    """The delivery feature, built from what it uses."""

    def __init__(self, *, bus: Bus, repo: DeliveryRepository, events: EventLog, clock: Clock,
                 settings: DispatchSettings, environ: Mapping[str, str]) -> None:
        self.service = DeliveryService(bus=bus, repo=repo, events=events, clock=clock,
                                       settings=settings, environ=environ)

    def wire(self, wiring: Wiring) -> None:
        service = self.service
        wiring.kind(Kind("subscriptions", "subscription", validate_subscription))
        wiring.on_config(service.on_config)
        wiring.target("subscription", service.on_target)
        wiring.implicit_routes(implicit_routes)
        wiring.service("delivery-push", service.run_push)
        wiring.service("delivery-pull-sweeper", service.run_sweeper)
        wiring.on_stop(service.stop)
        register_delivery_metrics(
            wiring.metrics, service.counts,
            lambda: {sub.name: service.push.in_flight(sub.name)
                     for sub in service.registry.push()})

    async def remote_commit(self) -> None:
        """Another process committed: pauses may have changed, work may be due."""
        self.service.wake_all()
        try:
            await self.service.refresh_controls()
        except OpsbusError as exc:  # stopping, or the store is away: the next one will do
            log.warning("subscription pauses not refreshed: %s", exc.detail)
