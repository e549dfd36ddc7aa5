"""Any JSON webhook into CloudEvents, by a declarative mapping in opsbus.toml.

    [plugins.webhook.mappings.statuspage]
    type = "statuspage.{data.page.status_indicator}"
    source = "statuspage"
    subject = "{data.incident.id}"
    id = "{data.incident.id}-{data.incident.updated_at}"
    time = "{data.incident.updated_at}"

receives `POST /v1/sources/webhook/statuspage`. Templates fill `{data.<path>}` from the
JSON body (substitution only). `type`, `source` and `id` must find every value they
name, or the request is refused with 422; without `id`, the SHA-256 of the body is
used, so a retried delivery is stored once. `subject`, `time`, `dedupkey` and the
templates under `extensions = { ... }` are left out when empty. A JSON array body
becomes one event per element.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from broker.plugin_host.api import Event, Registry, Reject, SourceRequest, render

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1

REQUIRED = ("type", "source")
OPTIONAL = ("subject", "time", "dedupkey")


def register(registry: Registry) -> None:
    registry.source("webhook", receive)


def receive(request: SourceRequest) -> list[Event]:
    mappings = request.config.get("mappings") or {}
    name = request.path.strip("/")
    mapping = mappings.get(name) if isinstance(mappings, Mapping) else None
    if not isinstance(mapping, Mapping):
        known = ", ".join(sorted(mappings)) if isinstance(mappings, Mapping) else ""
        raise Reject(f"no webhook mapping named {name!r} (configured: {known or 'none'});"
                     " add [plugins.webhook.mappings.<name>] to opsbus.toml", 404)
    payload = request.json()
    items = payload if isinstance(payload, list) else [payload]
    return [mapped(mapping, name, item, index if len(items) > 1 else None)
            for index, item in enumerate(items)]


def mapped(mapping: Mapping[str, Any], name: str, item: Any, index: int | None) -> Event:
    where = f"mapping {name}" + (f", item {index}" if index is not None else "")
    context = {"data": item}

    def fill(field: str, template: Any, strict: bool) -> str:
        try:
            return render(str(template), context, strict=strict)
        except ValueError as exc:
            raise Reject(f"{where}: {field} = {template!r}: {exc}", 422) from None

    for field in REQUIRED:
        if not mapping.get(field):
            raise Reject(f"mapping {name} has no {field} template", 500)
    event: Event = {"specversion": "1.0"}
    event["type"] = fill("type", mapping["type"], True)
    event["source"] = fill("source", mapping["source"], True)
    if mapping.get("id"):
        event["id"] = fill("id", mapping["id"], True)
    else:
        event["id"] = hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()
    extensions = mapping.get("extensions") or {}
    optional = [(f, mapping.get(f)) for f in OPTIONAL]
    optional += list(extensions.items()) if isinstance(extensions, Mapping) else []
    for field, template in optional:
        if template:
            value = fill(field, template, False)
            if value:
                event[field] = value
    event["datacontenttype"] = "application/json"
    event["data"] = item
    return event
