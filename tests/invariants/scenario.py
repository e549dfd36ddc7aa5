"""The configuration a checker run drives: queues, routes and subscriptions in
opsbus.toml, with seeded variations written as later versions for hot reloads."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("inv/monitoring", "inv/ci", "inv/tickets", "inv/jobs", "inv/misc")
OPERATORS = ("alice", "bob", "carol")
HOOK_TIMEOUT_S = 3.0
"""Webhook timeout: a `hang` receiver never answers within it, and it is ten times the
slowest `slow` answer, so a 2xx a receiver wrote is a 2xx the broker read in time."""
PULL_LEASE_S = 1.0
START_TIMEOUT_S = 120.0
"""How long a broker may take to become ready (a deadline, not a wait): start-up is not
what a run checks, and three replicas starting on a loaded two-core machine are slow."""

QUEUES = """
[[queues]]
name = "alerts"
group_key = "{source}/{subject}"
title = "{data.alertname} on {subject}"
resolve_filter = { sql = "data.status = 'resolved'" }
lease = "2s"

[[queues]]
name = "tickets"
group_key = "ticket-{data.ticket}"
title = "{data.summary}"

[[queues]]
name = "deadletter"
"""
# Queue settings never change between versions: the dry run predicts grouping with the
# current settings, and every event of a run must be comparable with it.


@dataclass
class Hook:
    """A push subscription and how its receiver answers (see receivers.Behaviour)."""

    name: str
    behaviour: str
    filter: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


HOOKS = (
    Hook("deploy-hook", "ok", {"prefix": {"type": "deploy."}}),
    Hook("ticket-hook", "flaky", {"exact": {"type": "ticket.update"}},
         {"retry": {"max_attempts": 4, "backoff": "50ms", "max_backoff": "200ms"}}),
    Hook("slow-hook", "slow", {"sql": "type LIKE 'alert.%' AND data.severity = 'page'"}),
    Hook("bad-hook", "reject", {"exact": {"type": "job.failed"}}),
    Hook("hang-hook", "hang", {"exact": {"type": "deploy.rollback"}},
         {"retry": {"max_attempts": 2, "backoff": "50ms", "max_backoff": "100ms"}}),
    # "Send everything to our chat webhook", and the chat answers 400.
    Hook("chat", "reject", {}),
)

SERVER = {
    "allow_private_targets": True,
    "delivery_poll_s": 0.2,
    "todo_sweep_s": 0.2,
    "durability": "normal",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    raise TypeError(value)


def _table(header: str, values: dict[str, Any]) -> str:
    return f"\n[[{header}]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())


@dataclass
class Version:
    """One version of the config file: which optional parts are on."""

    number: int
    deploy_env: str | None
    ticket_route: bool
    extra_route: bool
    pull_enabled: bool


def version(seed: int, number: int) -> Version:
    """Version `number` of the file for `seed` (0 is the one the broker starts with)."""
    if number == 0:
        return Version(0, "prod", True, False, True)
    rng = random.Random(f"{seed}/config/{number}")
    return Version(number, rng.choice(["prod", "staging", None]), rng.random() < 0.8,
                   rng.random() < 0.5, rng.random() < 0.8)


def render(v: Version, receiver_url: str, server: dict[str, Any]) -> str:
    """The opsbus.toml text of version `v`, hooks pointing at `receiver_url`."""
    parts = [f"# invariant checker config, version {v.number}\n[server]\n"]
    parts += [f"{k} = {_toml_value(val)}\n" for k, val in server.items()]
    parts.append(QUEUES)
    parts.append(_table("routes", {"name": "alerts", "filter": {"prefix": {"type": "alert."}},
                                   "targets": ["queue:alerts"]}))
    if v.ticket_route:
        parts.append(_table("routes", {"name": "tickets",
                                       "filter": {"exact": {"type": "ticket.update"}},
                                       "targets": ["queue:tickets"]}))
    deploys = ("type LIKE 'deploy.%'" if v.deploy_env is None
               else f"type LIKE 'deploy.%' AND data.env = '{v.deploy_env}'")
    parts.append(_table("routes", {"name": "deploys", "filter": {"sql": deploys},
                                   "targets": ["queue:tickets", "subscription:jobs"]}))
    parts.append(_table("routes", {"name": "job-failures",
                                   "filter": {"exact": {"type": "job.failed"}},
                                   "targets": ["queue:alerts", "subscription:jobs"]}))
    parts.append(_table("routes", {"name": "audit-feed",
                                   "filter": {"prefix": {"type": "opsbus.todo."}},
                                   "targets": ["subscription:audit"]}))
    if v.extra_route:
        parts.append(_table("routes", {"name": f"extra-{v.number}",
                                       "filter": {"sql": "subject LIKE 'db-%'"},
                                       "targets": ["queue:alerts"]}))
    for hook in HOOKS:
        spec: dict[str, Any] = {"name": hook.name, "type": "push",
                                "url": f"{receiver_url}/{hook.name}", "filter": hook.filter,
                                "timeout": f"{HOOK_TIMEOUT_S}s",
                                "retry": {"max_attempts": 3, "backoff": "50ms",
                                          "max_backoff": "200ms"},
                                "breaker": {"failures": 50, "cooldown": "200ms"}}
        spec.update(hook.extra)
        parts.append(_table("subscriptions", spec))
    # `jobs` is reached by routes and by its own filter (an implicit route) alike.
    parts.append(_table("subscriptions", {"name": "jobs", "type": "pull",
                                          "filter": {"prefix": {"type": "job."}},
                                          "lease": f"{PULL_LEASE_S}s", "max_deliveries": 3,
                                          "enabled": v.pull_enabled}))
    parts.append(_table("subscriptions", {"name": "audit", "type": "pull",
                                          "lease": f"{PULL_LEASE_S}s", "max_deliveries": 3}))
    return "".join(parts)
