"""Grafana Alerting webhook receiver (payload version 1): one CloudEvent per alert.

Point a Grafana contact point of type Webhook at `POST /v1/sources/grafana`. Each
element of `alerts[]` becomes `grafana.alert.firing` or `grafana.alert.resolved` with
the alert's fingerprint as subject and `dedupkey`, so a queue with
`group_key = "{dedupkey}"` keeps one item per alert and a resolve filter on
`grafana.alert.resolved` closes it. The id is the fingerprint, the status, the start
(and end) and a short hash of the alert's `values`: Grafana repeats a firing alert
every repeat interval with its current values, so a repeat with a new value is a new
event (same subject and dedupkey), while a retried delivery is stored once.

Config (`[plugins.grafana]`, optional): `source = "grafana/prod"` fixes the event source
(by default `grafana/<host of externalURL>`); `verify = { scheme = "grafana",
secret_env = "GRAFANA_WEBHOOK_SECRET" }` checks the contact point's HMAC signature
(add `timestamp_header` and `signed = "{timestamp}:{body}"` when Grafana is set to send
a timestamp). Without `verify`, the broker's per-source secret (`token_env`, sent by
Grafana as its Authorization header or Basic auth password) authenticates the sender.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from broker.plugin_host.api import Event, Registry, Reject, SourceRequest
from plugins._signatures import scheme_of, verify

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1

STATUSES = ("firing", "resolved")


def register(registry: Registry) -> None:
    table = registry.config.get("verify")
    scheme = scheme_of(table, "[plugins.grafana]") if table is not None else None
    registry.source("grafana", receiver(scheme, registry.secret), signed=scheme is not None)


def receiver(scheme: Any, secret: Callable[[str], str | None]
             ) -> Callable[[SourceRequest], list[Event]]:
    def receive(request: SourceRequest) -> list[Event]:
        if scheme is not None:
            verify(scheme, request, secret(scheme.secret_env))
        return events_of(request)
    return receive


def events_of(request: SourceRequest) -> list[Event]:
    """The events for one notification (a group of alerts)."""
    payload = request.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise Reject("not a Grafana webhook payload: no 'alerts' list", 400)
    if str(payload.get("version")) != "1":
        raise Reject(f"Grafana webhook payload version {payload.get('version')!r} is not"
                     " supported (expected '1')", 422)
    source = str(request.config.get("source") or default_source(payload))
    return [alert_event(alert, payload, source, index)
            for index, alert in enumerate(payload["alerts"])]


def default_source(payload: dict[str, Any]) -> str:
    host = urlsplit(str(payload.get("externalURL") or "")).hostname
    return f"grafana/{host or payload.get('receiver') or 'unknown'}"


def alert_event(alert: Any, payload: dict[str, Any], source: str, index: int) -> Event:
    if not isinstance(alert, dict):
        raise Reject(f"alerts[{index}] is not an object", 400)
    status = alert.get("status")
    if status not in STATUSES:
        raise Reject(f"alerts[{index}].status is {status!r}, not firing or resolved", 400)
    fingerprint = alert.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise Reject(f"alerts[{index}] has no fingerprint", 400)
    starts, ends = str(alert.get("startsAt") or ""), str(alert.get("endsAt") or "")
    # Like Alertmanager's, a firing alert's endsAt moves with each notification.
    instance = [starts if status == "firing" else f"{starts}/{ends}",
                alert.get("values"), alert.get("valueString")]
    digest = hashlib.sha256(orjson.dumps(instance, option=orjson.OPT_SORT_KEYS)).hexdigest()
    data = {**alert, "groupKey": payload.get("groupKey"), "receiver": payload.get("receiver"),
            "externalURL": payload.get("externalURL"), "orgId": payload.get("orgId")}
    event: Event = {
        "specversion": "1.0",
        "id": f"{fingerprint}-{status}-{digest[:12]}",
        "source": source,
        "type": f"grafana.alert.{status}",
        "subject": fingerprint,
        "datacontenttype": "application/json",
        "dedupkey": fingerprint,
        "data": data,
    }
    moment = ends if status == "resolved" else starts
    if moment and not moment.startswith("0001-"):
        event["time"] = moment
    return event
