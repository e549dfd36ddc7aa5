"""API actions: templated outbound calls run as jobs from the store, whose outcomes come
back to the bus as `opsbus.action.succeeded` / `opsbus.action.failed` events."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from broker.actions.service import ActionService
from broker.actions.spec import validate_action
from broker.config import Kind

if TYPE_CHECKING:
    from broker.core import Broker


def setup(broker: Broker) -> None:
    """Register the `actions` kind, the `action` target and the runner."""
    # The process environment is read here, at the feature's edge, and handed down:
    # `token_env`-style secrets are resolved from it when an action is loaded.
    service = ActionService(broker, os.environ)
    broker.extensions["actions"] = service
    broker.extensions.setdefault("action_kinds", {})
    broker.config.register_kind(Kind("actions", "action", validate_action))
    broker.config.on_change(service.on_config)
    broker.router.register_target("action", service.on_target)
    broker.add_service("action-runner", service.runner.run)
    broker.on_stop(service.stop)
    broker.metrics.sampled(
        "opsbus_action_jobs_total", "Action jobs run, by outcome.", "counter",
        lambda: {(k,): v for k, v in service.runner.stats.items()}, labels=("outcome",))
