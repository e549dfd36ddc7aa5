"""Any JSON webhook into CloudEvents, by a declarative mapping in opsbus.toml.

    [plugins.webhook.mappings.statuspage]
    type = "statuspage.{data.page.status_indicator}"
    source = "statuspage"
    subject = "{data.incident.id}"
    id = "{data.incident.id}-{data.incident.updated_at}"
    time = "{data.incident.updated_at}"

receives `POST /v1/sources/webhook/statuspage`. Templates fill `{data.<path>}` from the
JSON body (substitution only). `type`, `source` and `id` must find every value they
name, or the request is refused with 422; without `id`, the SHA-256 of the item is
used, so a retried delivery is stored once. `subject`, `time`, `dedupkey` and the
templates under `extensions = { ... }` are left out when empty. A JSON array body
becomes one event per element.

`split = "alerts"` makes one event per element of that array in the body (Grafana's
`alerts[]`, PagerDuty's `messages[]`): `{data.*}` is then the element and `{body.*}` the
whole notification. `id_digest = ["data.values"]` appends a short hash of those values
to the `id`, so a repeat of the same alert with a new value is a new event while an
exact retry is stored once.

`verify = { scheme = "pagerduty", secret_env = "PAGERDUTY_WEBHOOK_SECRET" }` checks an
HMAC signature before anything is read (schemes and fields: `plugins/_signatures.py`);
a bad or missing signature is 401.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from broker.plugin_host.api import Event, Registry, Reject, SourceRequest, render
from plugins._signatures import scheme_of, verify

__version__ = "1.1.0"
PLUGIN_API_VERSION = 1

BODY_FIELD = re.compile(r"\{body\.([A-Za-z0-9_.-]+)\}")
"""`{body.<path>}`: a field of the whole notification when `split` is used."""
REQUIRED = ("type", "source")
OPTIONAL = ("subject", "time", "dedupkey")


def register(registry: Registry) -> None:
    registry.source("webhook", lambda request: receive(request, registry.secret),
                    signed=verified)


def verified(request: SourceRequest) -> bool:
    """A mapping with `verify` checks the request's signature itself."""
    mappings = request.config.get("mappings") or {}
    mapping = (mappings.get(request.path.strip("/")) if isinstance(mappings, Mapping)
               else None)
    return isinstance(mapping, Mapping) and mapping.get("verify") is not None


def mapping_of(request: SourceRequest) -> tuple[str, Mapping[str, Any]]:
    mappings = request.config.get("mappings") or {}
    name = request.path.strip("/")
    mapping = mappings.get(name) if isinstance(mappings, Mapping) else None
    if not isinstance(mapping, Mapping):
        known = ", ".join(sorted(mappings)) if isinstance(mappings, Mapping) else ""
        raise Reject(f"no webhook mapping named {name!r} (configured: {known or 'none'});"
                     " add [plugins.webhook.mappings.<name>] to opsbus.toml", 404)
    return name, mapping


def receive(request: SourceRequest, secret: Callable[[str], str | None]) -> list[Event]:
    """The events of one request to a mapping (verified first when it says so)."""
    name, mapping = mapping_of(request)
    if mapping.get("verify") is not None:
        try:
            scheme = scheme_of(mapping["verify"], f"mapping {name}")
        except ValueError as exc:
            raise Reject(str(exc), 500) from None
        verify(scheme, request, secret(scheme.secret_env))
    payload = request.json()
    split = mapping.get("split")
    if split:
        items = lookup(payload, str(split))
        if not isinstance(items, list):
            raise Reject(f"mapping {name}: split = {split!r}: the body has no array there", 422)
    else:
        items = payload if isinstance(payload, list) else [payload]
    return [mapped(mapping, name, item, payload, index if len(items) > 1 else None)
            for index, item in enumerate(items)]


def lookup(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def mapped(mapping: Mapping[str, Any], name: str, item: Any, body: Any,
           index: int | None) -> Event:
    where = f"mapping {name}" + (f", item {index}" if index is not None else "")
    context = {"data": item, "body": body}

    def fill(field: str, template: Any, strict: bool) -> str:
        def from_body(match: re.Match[str]) -> str:
            value = lookup(body, match.group(1))
            if value is None and strict:
                raise ValueError(f"{{body.{match.group(1)}}} has no value")
            return "" if value is None else str(value).replace("{", "{{").replace("}", "}}")

        try:
            return render(BODY_FIELD.sub(from_body, str(template)), {"data": item},
                          strict=strict)
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
    digest_of = mapping.get("id_digest") or []
    if digest_of:
        values = [lookup(context, str(path)) for path in digest_of]
        digest = hashlib.sha256(orjson.dumps(values, option=orjson.OPT_SORT_KEYS)).hexdigest()
        event["id"] = f"{event['id']}-{digest[:12]}"
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
