"""GitHub webhook receiver: verified deliveries become `com.github.<event>.<action>` events.

Add a webhook in GitHub pointing at `POST /v1/sources/github` (content type
`application/json`, a secret set) and name the environment variable holding that secret:

    [plugins.github]
    secret_env = "GITHUB_WEBHOOK_SECRET"

Every delivery must carry a valid `X-Hub-Signature-256` (HMAC-SHA256 of the body);
anything else is refused with 401 — the signature is the source's own authentication,
no API token is needed. The delivery GUID is the event id and every attribute comes
from the payload and the delivery headers (never the time of receipt), so a
redelivery is the same event and is stored once. `time` is when the object the
delivery is about last changed (absent when the payload does not say); the subject of
each kind is listed in `SUBJECTS` (`pull/12`, `refs/heads/main`, `runs/42`...).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import orjson

from broker.plugin_host.api import Event, Registry, Reject, SourceRequest
from plugins._signatures import scheme_of, sign, verify

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
        verify(SCHEME, request, secret)
        return [delivery_event(request)]

    registry.source("github", receive, signed=True)  # refused without a valid signature


SCHEME = scheme_of({"scheme": "github", "secret_env": "GITHUB_WEBHOOK_SECRET"}, "github")


def signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + sign(SCHEME, secret.encode(), body)


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
    """The event for one delivery: every attribute from the payload and the delivery's
    headers, so a redelivery is the same event byte for byte."""
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
        "time": time_of(kind, payload),
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


SUBJECTS: dict[str, tuple[str, ...]] = {
    "branch_protection_rule": ("branch-protection/{rule.name}",),
    "check_run": ("check-runs/{check_run.id}",),
    "check_suite": ("check-suites/{check_suite.id}",),
    "code_scanning_alert": ("code-scanning/{alert.number}",),
    "commit_comment": ("commits/{comment.commit_id}",),
    "create": ("refs/{ref_kind}/{ref}",),
    "delete": ("refs/{ref_kind}/{ref}",),
    "dependabot_alert": ("dependabot/{alert.number}",),
    "deploy_key": ("deploy-keys/{key.id}",),
    "deployment": ("deployments/{deployment.id}",),
    "deployment_protection_rule": ("deployments/{deployment.id}", "environments/{environment}"),
    "deployment_review": ("runs/{workflow_run.id}", "environments/{environment}"),
    "deployment_status": ("deployments/{deployment.id}",),
    "discussion": ("discussions/{discussion.number}",),
    "discussion_comment": ("discussions/{discussion.number}",),
    "fork": ("forks/{forkee.full_name}",),
    "github_app_authorization": ("users/{sender.login}",),
    "gollum": ("wiki/{pages.0.page_name}", "wiki"),
    "installation": ("installations/{installation.id}",),
    "installation_repositories": ("installations/{installation.id}",),
    "installation_target": ("installations/{installation.id}",),
    "issue_comment": ("{issue_kind}/{issue.number}",),
    "issues": ("issues/{issue.number}",),
    "label": ("labels/{label.name}",),
    "marketplace_purchase": ("marketplace/{marketplace_purchase.account.login}",),
    "member": ("members/{member.login}",),
    "membership": ("teams/{team.slug}/members/{member.login}",),
    "merge_group": ("merge-queue/{merge_group.head_ref}",),
    "meta": ("hooks/{hook_id}",),
    "milestone": ("milestones/{milestone.number}",),
    "org_block": ("users/{blocked_user.login}",),
    "organization": ("members/{membership.user.login}", "organization"),
    "package": ("packages/{package.package_type}/{package.name}",),
    "page_build": ("pages/{build.commit}", "pages/{id}"),
    "ping": ("hooks/{hook_id}",),
    "project": ("projects/{project.id}",),
    "project_card": ("project-cards/{project_card.id}",),
    "project_column": ("project-columns/{project_column.id}",),
    "projects_v2": ("projects-v2/{projects_v2.id}",),
    "projects_v2_item": ("projects-v2-items/{projects_v2_item.id}",),
    "public": ("repository",),
    "pull_request": ("pull/{pull_request.number}", "pull/{number}"),
    "pull_request_review": ("pull/{pull_request.number}",),
    "pull_request_review_comment": ("pull/{pull_request.number}",),
    "pull_request_review_thread": ("pull/{pull_request.number}",),
    "push": ("{ref}",),
    "registry_package": ("packages/{registry_package.package_type}/{registry_package.name}",),
    "release": ("releases/{release.tag_name}",),
    "repository": ("repository",),
    "repository_dispatch": ("dispatch/{action}",),
    "repository_import": ("import",),
    "repository_vulnerability_alert": ("vulnerability-alerts/{alert.id}",),
    "secret_scanning_alert": ("secret-scanning/{alert.number}",),
    "secret_scanning_alert_location": ("secret-scanning/{alert.number}",),
    "security_advisory": ("advisories/{security_advisory.ghsa_id}",),
    "sponsorship": ("sponsorships/{sponsorship.sponsor.login}",),
    "star": ("stargazers/{sender.login}",),
    "status": ("commits/{sha}",),
    "team": ("teams/{team.slug}",),
    "team_add": ("teams/{team.slug}",),
    "watch": ("watchers/{sender.login}",),
    "workflow_dispatch": ("workflows/{workflow}",),
    "workflow_job": ("runs/{workflow_job.run_id}/jobs/{workflow_job.id}",),
    "workflow_run": ("runs/{workflow_run.id}",),
}
"""The subject of each kind of delivery (first template whose fields are all present):
what a route or a queue's group key selects on. Kinds not listed use `<kind>/<id>` of
their main object, else the kind's name."""

FIELD = re.compile(r"\{([a-z0-9_.]+)\}")


def _lookup(payload: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(payload, dict):
            payload = payload.get(part)
        elif isinstance(payload, list) and part.isascii() and part.isdigit() \
                and len(part) < 10 and int(part) < len(payload):
            payload = payload[int(part)]
        else:
            return None
    return payload


def _fill(template: str, payload: dict[str, Any]) -> str | None:
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = _lookup(payload, match.group(1))
        if found is None or found == "" or isinstance(found, dict | list | bool):
            missing = True
            return ""
        return str(found)

    text = FIELD.sub(value, template)
    return None if missing else text


def subject_of(kind: str, payload: dict[str, Any]) -> str:
    """What the delivery is about (see SUBJECTS)."""
    ref_kind = "tags" if payload.get("ref_type") == "tag" else "heads"
    issue = payload.get("issue")
    is_pull = isinstance(issue, dict) and bool(issue.get("pull_request"))
    context = {**payload, "ref_kind": ref_kind, "issue_kind": "pull" if is_pull else "issues"}
    for template in SUBJECTS.get(kind, (f"{kind}/{{{kind}.id}}",)):
        text = _fill(template, context)
        if text:
            return text
    return kind


TIME_FIELDS = ("updated_at", "submitted_at", "completed_at", "created_at", "starred_at",
               "timestamp")
MAIN_OBJECT = {"issue_comment": "comment", "commit_comment": "comment",
               "discussion_comment": "comment", "pull_request_review": "review",
               "pull_request_review_comment": "comment", "pull_request_review_thread": "thread",
               "branch_protection_rule": "rule", "deploy_key": "key", "secret_scanning_alert":
               "alert", "code_scanning_alert": "alert", "dependabot_alert": "alert"}
"""The object a delivery of that kind is about, when it is not named like the kind."""


def time_of(kind: str, payload: dict[str, Any]) -> str | None:
    """When the thing the delivery is about last changed, from the payload; None (no
    `time` attribute) when the payload does not say. Never the time of receipt: a
    redelivery must be the same event."""
    head = payload.get("head_commit")
    if kind == "push" and isinstance(head, dict) and isinstance(head.get("timestamp"), str):
        return str(head["timestamp"])
    candidates = [payload.get(MAIN_OBJECT.get(kind, kind))]
    candidates += [payload.get(k) for k in ("pull_request", "issue", "comment", "review",
                                            "release", "workflow_run", "workflow_job",
                                            "check_run", "check_suite", "deployment_status",
                                            "deployment", "alert", "discussion", "hook")]
    candidates.append(payload)  # `status`, `star`: the times are top-level fields
    for found in candidates:
        if isinstance(found, dict):
            for name in TIME_FIELDS:
                value = found.get(name)
                if isinstance(value, str) and value:
                    return value
    return None
