"""GitHub webhook receiver: verified deliveries become `com.github.<event>.<action>` events.

Add a webhook in GitHub pointing at `POST /v1/sources/github` (content type
`application/json`, a secret set) and name the environment variable holding that secret:

    [plugins.github]
    secret_env = "GITHUB_WEBHOOK_SECRET"

Every delivery must carry a valid `X-Hub-Signature-256` (HMAC-SHA256 of the body);
anything else is refused with 401. The delivery GUID is the event id, so GitHub's
redeliveries are stored once.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from broker.plugin_host.api import Event, Registry, Reject, SourceRequest

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1


def register(registry: Registry) -> None:
    env = registry.config.get("secret_env")
    secret = registry.secret(str(env)) if env else None

    def receive(request: SourceRequest) -> list[Event]:
        if not env:
            raise Reject("the github source has no secret: set [plugins.github] secret_env"
                         " to the environment variable holding the webhook secret", 503)
        if secret is None:
            raise Reject(f"the github source's secret variable {env} is not set", 503)
        verify(secret, request.body, request.headers.get("X-Hub-Signature-256"))
        return [delivery_event(request)]

    registry.source("github", receive)


def signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, given: str | None) -> None:
    if not given:
        raise Reject("the X-Hub-Signature-256 header is missing", 401)
    if not hmac.compare_digest(signature(secret, body).encode(), given.strip().encode()):
        raise Reject("the X-Hub-Signature-256 signature does not match the body", 401)


def payload_of(request: SourceRequest) -> Any:
    # GitHub's other content type posts the JSON as a `payload` form field.
    if request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(request.body.decode(errors="replace"))
        if "payload" not in fields:
            raise Reject("form-encoded delivery without a payload field", 400)
        try:
            return orjson.loads(fields["payload"][0])
        except orjson.JSONDecodeError as exc:
            raise Reject(f"the payload field is not valid JSON: {exc}", 400) from None
    return request.json()


def delivery_event(request: SourceRequest) -> Event:
    kind = request.headers.get("X-GitHub-Event")
    delivery = request.headers.get("X-GitHub-Delivery")
    if not kind or not delivery:
        raise Reject("X-GitHub-Event and X-GitHub-Delivery headers are required", 400)
    payload = payload_of(request)
    if not isinstance(payload, dict):
        raise Reject("the delivery body is not a JSON object", 400)
    action = payload.get("action")
    event: Event = {
        "specversion": "1.0",
        "id": delivery,
        "source": source_of(payload),
        "type": f"com.github.{kind}.{action}" if isinstance(action, str) else f"com.github.{kind}",
        "subject": subject_of(kind, payload),
        "time": time_of(payload),
        "datacontenttype": "application/json",
        "data": payload,
    }
    return {k: v for k, v in event.items() if v is not None}


def source_of(payload: dict[str, Any]) -> str:
    for key, field in (("repository", "full_name"), ("organization", "login"),
                       ("sender", "login")):
        value = (payload.get(key) or {}).get(field)
        if value:
            return f"github.com/{value}"
    return "github.com"


def subject_of(kind: str, payload: dict[str, Any]) -> str | None:
    """`pull/12`, `issues/7`, `refs/heads/main`, `v1.2.0`: what the delivery is about."""
    if isinstance(payload.get("pull_request"), dict):
        return f"pull/{payload['pull_request'].get('number', payload.get('number'))}"
    issue = payload.get("issue")
    if isinstance(issue, dict):
        return f"{'pull' if issue.get('pull_request') else 'issues'}/{issue.get('number')}"
    if isinstance(payload.get("release"), dict):
        return str(payload["release"].get("tag_name"))
    if kind in ("push", "create", "delete") and payload.get("ref"):
        return str(payload["ref"])
    run = payload.get("workflow_run") or payload.get("check_run")
    if isinstance(run, dict) and run.get("id") is not None:
        return f"runs/{run['id']}"
    return None


def time_of(payload: dict[str, Any]) -> str:
    for key in ("pull_request", "issue", "comment", "release", "workflow_run"):
        value = payload.get(key)
        if isinstance(value, dict) and isinstance(value.get("updated_at"), str):
            return str(value["updated_at"])
    head = payload.get("head_commit")
    if isinstance(head, dict) and isinstance(head.get("timestamp"), str):
        return str(head["timestamp"])
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
