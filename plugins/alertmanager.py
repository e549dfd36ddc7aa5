"""Alertmanager webhook receiver (payload version 4): one CloudEvent per alert.

Point a `webhook_configs` receiver at `POST /v1/sources/alertmanager`. Each alert becomes
`prometheus.alert.firing` or `prometheus.alert.resolved` with the fingerprint as subject
and `dedupkey`, so a queue with `group_key = "{dedupkey}"` keeps one item per alert and
a resolve filter on `prometheus.alert.resolved` closes it. Ids are derived from the
fingerprint, the status and the alert's start (and end), so a notification that is
delivered again (a retry, a repeat interval) is stored once.

Config (`[plugins.alertmanager]`, optional): `source = "alertmanager/prod-eu1"` fixes the
event source (by default `alertmanager/<host of externalURL>`, else the receiver name);
set it when several Alertmanagers of one HA cluster notify the same broker, so their
duplicate notifications share a source and deduplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from broker.plugin_host.api import Event, Registry, Reject, SourceRequest

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1

STATUSES = ("firing", "resolved")


def register(registry: Registry) -> None:
    registry.source("alertmanager", receive)


def receive(request: SourceRequest) -> list[Event]:
    """The events for one webhook notification (a group of alerts)."""
    payload = request.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise Reject("not an Alertmanager webhook payload: no 'alerts' list", 400)
    if str(payload.get("version")) != "4":
        raise Reject(f"Alertmanager webhook payload version {payload.get('version')!r} is not"
                     " supported (expected '4')", 422)
    source = request.config.get("source") or default_source(payload)
    return [alert_event(alert, payload, str(source), index)
            for index, alert in enumerate(payload["alerts"])]


def default_source(payload: dict[str, Any]) -> str:
    host = urlsplit(str(payload.get("externalURL") or "")).hostname
    return f"alertmanager/{host or payload.get('receiver') or 'unknown'}"


def fingerprint_of(alert: dict[str, Any]) -> str:
    """Alertmanager's fingerprint; versions before 0.19 sent none, so derive one from
    the labels (which is what Alertmanager hashes too)."""
    given = alert.get("fingerprint")
    if isinstance(given, str) and given:
        return given
    labels = alert.get("labels") or {}
    text = "\xff".join(f"{k}\xff{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert_event(alert: Any, payload: dict[str, Any], source: str, index: int) -> Event:
    if not isinstance(alert, dict):
        raise Reject(f"alerts[{index}] is not an object", 400)
    status = alert.get("status")
    if status not in STATUSES:
        raise Reject(f"alerts[{index}].status is {status!r}, not firing or resolved", 400)
    fingerprint = fingerprint_of(alert)
    starts, ends = str(alert.get("startsAt") or ""), str(alert.get("endsAt") or "")
    # A firing alert's endsAt moves with every notification in older Alertmanagers
    # (now + resolve_timeout): only the start identifies the firing.
    instance = starts if status == "firing" else f"{starts}/{ends}"
    digest = hashlib.sha256(instance.encode()).hexdigest()[:12]
    data = {**alert, "fingerprint": fingerprint, "groupKey": payload.get("groupKey"),
            "receiver": payload.get("receiver"), "externalURL": payload.get("externalURL")}
    event: Event = {
        "specversion": "1.0",
        "id": f"{fingerprint}-{status}-{digest}",
        "source": source,
        "type": f"prometheus.alert.{status}",
        "subject": fingerprint,
        "datacontenttype": "application/json",
        "dedupkey": fingerprint,
        "data": data,
    }
    moment = ends if status == "resolved" else starts
    if moment and not moment.startswith("0001-"):
        event["time"] = moment
    return event
