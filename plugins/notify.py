"""The `notify` action kind: post a message to a Slack-compatible incoming webhook.

    [[actions]]
    name = "tell-oncall"
    kind = "notify"
    url_env = "SLACK_WEBHOOK_URL"      # or url = "https://chat.example/hooks/..."
    text = "P1 opened: {data.item.title}"
    username = "opsbus"                # optional: channel, icon_emoji too

    [[routes]]
    name = "p1-to-channel"
    filter = { sql = "type = 'opsbus.todo.opened' AND data.item.priority = 'P1'" }
    targets = ["action:tell-oncall"]

The text is a template over the triggering event (`{data.item.title}`, `{subject}`).
Webhook URLs carry their own credential, so prefer `url_env`. Mattermost, Rocket.Chat
and Slack accept the same `{"text": ...}` body. Loopback and private receivers need
the broker's `allow_private_targets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.plugin_host.api import ActionContext, Event, Registry, render, seconds

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1

PASSED_THROUGH = ("username", "channel", "icon_emoji", "icon_url")


def register(registry: Registry) -> None:
    registry.action("notify", run)


async def run(spec: Mapping[str, Any], event: Event, ctx: ActionContext) -> dict[str, Any]:
    url, shown = spec.get("url"), spec.get("url")
    if spec.get("url_env"):
        url, shown = ctx.secret(str(spec["url_env"])), f"${spec['url_env']}"
    if not url:
        return {"ok": False, "status": None, "body": None, "request": {"url": shown},
                "error": "notify needs url or url_env (set in the broker's environment)"}
    text = render(str(spec.get("text") or "{type} from {source}: {subject}"), event)
    payload: dict[str, Any] = {"text": text}
    payload.update({k: spec[k] for k in PASSED_THROUGH if spec.get(k)})
    request = {"method": "POST", "url": shown, "body": payload}
    try:
        status, body = await ctx.http.post_json(str(url), payload,
                                                timeout=seconds(spec.get("timeout", 10)))
    except Exception as exc:  # refused target, DNS, connection, timeout: all a failed run
        return {"ok": False, "status": None, "body": None, "request": request,
                "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__}
    ok = 200 <= status < 300
    return {"ok": ok, "status": status, "body": body, "request": request,
            "error": None if ok else f"the webhook answered {status}"}
