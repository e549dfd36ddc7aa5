"""Delivery: push subscriptions (webhooks) and pull subscriptions, run from the store."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from broker.config import Kind
from broker.delivery.service import DeliveryService
from broker.delivery.subscriptions import implicit_routes, validate_subscription
from broker.metrics_delivery import register_delivery_metrics

if TYPE_CHECKING:
    from broker.core import Broker


def setup(broker: Broker) -> None:
    """Register the `subscriptions` kind, the `subscription` target and the dispatcher."""
    # The process environment is read here, at the feature's edge, and handed down:
    # `secret_env` values are resolved from it when a subscription is loaded.
    service = DeliveryService(broker, os.environ)
    broker.extensions["delivery"] = service
    broker.config.register_kind(Kind("subscriptions", "subscription", validate_subscription))
    broker.config.on_change(service.on_config)
    broker.router.register_target("subscription", service.on_target)
    broker.router.add_contributor(implicit_routes)
    broker.add_service("delivery-push", service.run_push)
    broker.add_service("delivery-pull-sweeper", service.run_sweeper)
    broker.on_remote_commit(service.wake_all)
    broker.on_stop(service.stop)
    register_delivery_metrics(
        broker.metrics, service.counts,
        lambda: {sub.name: service.push.in_flight(sub.name) for sub in service.registry.push()})
