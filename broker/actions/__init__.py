"""API actions: templated outbound calls run as jobs from the store, whose outcomes come
back to the bus as `opsbus.action.succeeded` / `opsbus.action.failed` events.

The feature registers the `actions` configuration kind, the `action:<name>` route target
(a job row in the event's transaction) and the runner. Kinds beyond `http` come from
plugins through the `ActionKinds` registry; quick actions on todo items go through the
`TodoActions` port. Its records and repository contract are `model` and `repository`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from broker.actions.kinds import ActionKinds
from broker.actions.service import ActionService
from broker.actions.spec import validate_action
from broker.config import Kind

if TYPE_CHECKING:
    from broker.actions.repository import JobRepository
    from broker.bus import Bus, EventLog
    from broker.clock import Clock
    from broker.dispatcher import DispatchSettings
    from broker.wiring import Wiring

__all__ = ["ActionKinds", "ActionService", "Actions"]


class Actions:
    """The actions feature, built from what it uses."""

    def __init__(self, *, bus: Bus, repo: JobRepository, events: EventLog, clock: Clock,
                 settings: DispatchSettings, kinds: ActionKinds,
                 environ: Mapping[str, str]) -> None:
        self.service = ActionService(bus=bus, repo=repo, events=events, clock=clock,
                                     settings=settings, kinds=kinds, environ=environ)

    def wire(self, wiring: Wiring) -> None:
        service = self.service
        wiring.kind(Kind("actions", "action", validate_action))
        wiring.on_config(service.on_config)
        wiring.target("action", service.on_target)
        wiring.service("action-runner", service.runner.run)
        wiring.on_stop(service.stop)
        wiring.metrics.sampled(
            "opsbus_action_jobs_total", "Action jobs run, by outcome.", "counter",
            lambda: {(k,): v for k, v in service.runner.stats.items()}, labels=("outcome",))
