"""Who may post to a source: its own signature check, its shared secret, an API token
with the publish scope, or nobody until its table says `public = true`.

A source receives webhooks from systems that hold no opsbus token (GitHub, Alertmanager,
Grafana), so it is not behind the API token; but an unauthenticated source would let
anyone publish as that system. The broker checks, before the plugin's handler runs:

- the plugin checks a signature itself (`registry.source(..., signed=...)`): its call;
- `[plugins.<name>] token_env = "VAR"`: the request carries that variable's value
  (`offered_secret` lists where);
- an API token with the `publish` scope and no source patterns;
- `[plugins.<name>] public = true`: anyone who can reach the broker.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from broker.errors import Unauthorized, Unavailable
from broker.plugin_host.api import SourceRequest
from broker.plugin_host.registry import read_secret


def offered_secret(request: SourceRequest) -> str | None:
    """The shared secret a sender presents: `Authorization: Bearer <secret>`, the
    password of Basic auth (what Alertmanager's `http_config` and Grafana contact points
    send), `X-Opsbus-Source-Token`, or `?token=`."""
    header = str(request.headers.get("Authorization", ""))
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    offered = request.headers.get("X-Opsbus-Source-Token") or request.query.get("token")
    return str(offered) if offered else None


def check_source(name: str, plugin: str, request: SourceRequest,
                 signed: bool | Callable[[SourceRequest], bool], *, api_token: bool) -> None:
    """Raise Unauthorized unless the request may reach source `name` (see the module)."""
    config: Mapping[str, Any] = request.config
    if api_token or config.get("public") is True:
        return
    if signed(request) if callable(signed) else signed:
        return
    env = config.get("token_env")
    if isinstance(env, str) and env:
        expected = read_secret(env)
        if expected is None:
            raise Unavailable(f"source {name}: its secret variable {env} is not set in the"
                              " broker's environment", source=name)
        offered = offered_secret(request)
        if offered is not None and hmac.compare_digest(offered.encode(), expected.encode()):
            return
        raise Unauthorized(f"source {name}: the request lacks the source's secret"
                           f" ${env} (as Authorization: Bearer, a Basic auth password or"
                           " X-Opsbus-Source-Token)", source=name)
    raise Unauthorized(
        f"source {name} has no authentication configured: set token_env (a shared secret"
        f" senders present) or, to accept anyone who can reach the broker, public = true,"
        f" in [plugins.{plugin}]; or post with an API token that has the publish scope",
        source=name)
