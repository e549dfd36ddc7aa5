"""Subscriptions: validation of the `[[subscriptions]]` config kind and the typed, live
registry the dispatcher, pull API and router read."""

from __future__ import annotations

import base64
import binascii
import functools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yarl

from broker.backoff import backoff_delay
from broker.config.repository import ConfigObject
from broker.errors import InvalidConfig, OpsbusError
from broker.filters import Filter, compile_filter
from broker.outbound import secret_headers
from broker.outbound_config import validate_headers, validate_http_url
from broker.routing import CompiledRoute, check_name, parse_target
from broker.timeutil import parse_duration

TYPES = ("push", "pull")
CONTENT_MODES = ("binary", "structured")
DEFAULT_DEAD_LETTER = "queue:deadletter"
RETRY_DEFAULTS: dict[str, Any] = {"max_attempts": 8, "backoff": "1s", "max_backoff": "5m",
                                  "max_age": "24h"}
BREAKER_DEFAULTS: dict[str, Any] = {"failures": 5, "cooldown": "30s"}
COMMON = {"name", "type", "description", "filter", "dead_letter", "enabled"}
PUSH_FIELDS = COMMON | {"url", "content_mode", "headers", "secret", "secret_env", "timeout",
                        "retry", "ordered", "max_in_flight", "breaker"}
PULL_FIELDS = COMMON | {"max_deliveries", "lease"}
SECRET_PREFIX = "whsec_"

DEFAULT_MAX_IN_FLIGHT = 16
"""Webhook calls a push subscription has out at once, unless it says otherwise. Its
throughput is about this many divided by the receiver's answer time, so 4 held a local
receiver answering in 2-3 ms to a few hundred a second. Peers put no concurrency cap on
a receiver by default (Knative Eventing triggers; Svix, whose per-endpoint rate limit is
off unless set) or cap its rate (EventBridge API destinations: 300 invocations/s); 16
calls stays modest for a small receiver and keeps one answering in 10 ms above 1,000/s.
`ordered` subscriptions still send one at a time."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after `whsec_`."""
    text = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(text, validate=True)


def _duration(value: Any, what: str, *, positive: bool = True) -> float:
    try:
        seconds = parse_duration(value, what)
    except OpsbusError as exc:
        raise InvalidConfig(exc.detail) from None
    if positive and seconds <= 0:
        raise InvalidConfig(f"{what} must be positive")
    return seconds


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidConfig(f"{what} must be an integer between {low} and {high}")
    return value


def _table(value: Any, what: str, defaults: dict[str, Any]) -> dict[str, Any]:
    if value is None:
        return dict(defaults)
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} must be a table")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise InvalidConfig(f"{what}: unknown field(s) {', '.join(unknown)}")
    return {**defaults, **value}


def validate_dead_letter(value: Any, what: str) -> str:
    """`queue:<name>` (a bare queue name is accepted and normalised)."""
    if value is None:
        return DEFAULT_DEAD_LETTER
    if isinstance(value, str) and ":" not in value:
        value = f"queue:{value}"
    kind, _ = parse_target(value)
    if kind != "queue":
        raise InvalidConfig(f"{what} must be a todo queue, 'queue:<name>'")
    return str(value)


def validate_subscription(spec: Any) -> dict[str, Any]:
    """Check a subscription's JSON form and return it normalised (defaults filled in)."""
    if not isinstance(spec, dict):
        raise InvalidConfig("a subscription must be an object")
    name = check_name(spec.get("name"), "subscription")
    where = f"subscription {name}"
    kind = spec.get("type", "push" if "url" in spec else None)
    if kind not in TYPES:
        raise InvalidConfig(f"{where}: type must be 'push' or 'pull'")
    unknown = sorted(set(spec) - (PUSH_FIELDS if kind == "push" else PULL_FIELDS))
    if unknown:
        raise InvalidConfig(f"{where}: unknown field(s) for a {kind} subscription: "
                            f"{', '.join(unknown)}")
    out: dict[str, Any] = {"name": name, "type": kind}
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidConfig(f"{where}: description must be a string")
    out["description"] = description
    if spec.get("filter") is not None:
        try:
            out["filter"] = compile_filter(spec["filter"], strict=True).spec
        except OpsbusError as exc:
            raise InvalidConfig(f"{where}: filter: {exc.detail}", **exc.extra) from None
    out["dead_letter"] = validate_dead_letter(spec.get("dead_letter"), f"{where}: dead_letter")
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidConfig(f"{where}: enabled must be true or false")
    out["enabled"] = enabled
    if kind == "pull":
        out["max_deliveries"] = _int(spec.get("max_deliveries", 5), f"{where}: max_deliveries",
                                     1, 1000)
        lease = spec.get("lease", "30s")
        _duration(lease, f"{where}: lease")
        out["lease"] = lease
        return out
    out["url"] = validate_http_url(spec.get("url"), f"{where}: url")
    mode = spec.get("content_mode", "binary")
    if mode not in CONTENT_MODES:
        raise InvalidConfig(f"{where}: content_mode must be 'binary' or 'structured'")
    out["content_mode"] = mode
    out["headers"] = validate_headers(spec.get("headers"), f"{where}: headers")
    if spec.get("secret") is not None and spec.get("secret_env") is not None:
        raise InvalidConfig(f"{where}: give secret or secret_env, not both")
    if spec.get("secret") is not None:
        secret = spec["secret"]
        try:
            if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
                raise ValueError
            if not decode_secret(secret):
                raise ValueError
        except (ValueError, binascii.Error):
            raise InvalidConfig(f"{where}: secret must be 'whsec_' followed by base64") from None
        out["secret"] = secret
    if spec.get("secret_env") is not None:
        if not isinstance(spec["secret_env"], str) or not spec["secret_env"]:
            raise InvalidConfig(f"{where}: secret_env must name an environment variable")
        out["secret_env"] = spec["secret_env"]
    timeout = spec.get("timeout", "10s")
    _duration(timeout, f"{where}: timeout")
    out["timeout"] = timeout
    retry = _table(spec.get("retry"), f"{where}: retry", RETRY_DEFAULTS)
    _int(retry["max_attempts"], f"{where}: retry.max_attempts", 1, 1000)
    for key in ("backoff", "max_backoff", "max_age"):
        _duration(retry[key], f"{where}: retry.{key}")
    out["retry"] = retry
    ordered = spec.get("ordered", False)
    if not isinstance(ordered, bool):
        raise InvalidConfig(f"{where}: ordered must be true or false")
    out["ordered"] = ordered
    out["max_in_flight"] = _int(spec.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT),
                                f"{where}: max_in_flight", 1, 256)
    breaker = _table(spec.get("breaker"), f"{where}: breaker", BREAKER_DEFAULTS)
    _int(breaker["failures"], f"{where}: breaker.failures", 1, 10000)
    _duration(breaker["cooldown"], f"{where}: breaker.cooldown")
    out["breaker"] = breaker
    return out


def redacted(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the API shows it: the signing secret never leaves the broker."""
    if "secret" not in spec:
        return dict(spec)
    return {**spec, "secret": "whsec_***"}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by age."""

    max_attempts: int
    backoff: float
    max_backoff: float
    max_age: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): "equal jitter", half
        fixed and half random, so retries spread out but never come back too early."""
        return backoff_delay(attempt, self.backoff, self.max_backoff, rng)


@dataclass(frozen=True)
class Subscription:
    """A validated subscription, ready for the dispatcher and the pull API."""

    name: str
    type: str
    spec: dict[str, Any]
    filter: Filter | None
    dead_letter_queue: str
    enabled: bool = True
    url: str = ""
    content_mode: str = "binary"
    headers: dict[str, str] = field(default_factory=dict)
    secret: bytes | None = None
    timeout: float = 10.0
    retry: RetryPolicy = RetryPolicy(8, 1.0, 300.0, 86400.0)
    ordered: bool = False
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    max_deliveries: int = 5
    lease_s: float = 30.0
    problem: str | None = None
    """Why it cannot deliver now (a missing secret variable); deliveries wait."""

    @property
    def is_push(self) -> bool:
        return self.type == "push"

    @functools.cached_property
    def request_parts(self) -> tuple[str, dict[str, str], frozenset[str]]:
        """What every webhook request of this subscription shares, worked out once (a
        changed configuration is a new object): the URL percent-encoded as sent, the
        static headers, and the names of the headers to redact when a request is
        recorded. Only the static headers and the signature can carry a credential;
        the CloudEvents and content-type headers never do."""
        secrets = secret_headers(self.headers)
        if self.secret is not None:
            secrets |= {"webhook-signature"}
        return str(yarl.URL(self.url)), dict(self.headers), secrets


def build(spec: dict[str, Any], environ: Mapping[str, str]) -> Subscription:
    """A Subscription from a normalised spec; `secret_env` is resolved here, once, when
    the configuration is loaded."""
    flt = compile_filter(spec["filter"]) if spec.get("filter") is not None else None
    queue = spec["dead_letter"].split(":", 1)[1]
    common: dict[str, Any] = {"name": spec["name"], "type": spec["type"], "spec": spec,
                              "filter": flt, "dead_letter_queue": queue,
                              "enabled": spec["enabled"]}
    if spec["type"] == "pull":
        return Subscription(**common, max_deliveries=spec["max_deliveries"],
                            lease_s=parse_duration(spec["lease"]))
    problem = None
    secret = decode_secret(spec["secret"]) if spec.get("secret") else None
    if spec.get("secret_env"):
        raw = environ.get(spec["secret_env"])
        if not raw:
            problem = f"environment variable {spec['secret_env']} is not set"
        else:
            try:
                secret = decode_secret(raw)
            except (ValueError, binascii.Error):
                problem = f"environment variable {spec['secret_env']} is not a whsec_ secret"
    retry = spec["retry"]
    return Subscription(
        **common, url=spec["url"], content_mode=spec["content_mode"], headers=spec["headers"],
        secret=secret, timeout=parse_duration(spec["timeout"]),
        retry=RetryPolicy(retry["max_attempts"], parse_duration(retry["backoff"]),
                          parse_duration(retry["max_backoff"]), parse_duration(retry["max_age"])),
        ordered=spec["ordered"], max_in_flight=spec["max_in_flight"],
        breaker_failures=spec["breaker"]["failures"],
        breaker_cooldown=parse_duration(spec["breaker"]["cooldown"]), problem=problem,
    )


class SubscriptionRegistry:
    """The live subscriptions, rebuilt on every configuration change."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.by_name: dict[str, Subscription] = {}
        self.objects: dict[str, ConfigObject] = {}
        """The configuration objects behind them (origin, version), by name."""

    def load(self, objects: Iterable[ConfigObject]) -> None:
        table = {}
        found = {}
        for obj in objects:
            if obj.kind == "subscriptions":
                table[obj.name] = build(obj.spec, self._environ)
                found[obj.name] = obj
        self.by_name, self.objects = table, found

    def get(self, name: str) -> Subscription | None:
        return self.by_name.get(name)

    def push(self) -> list[Subscription]:
        return [s for s in self.by_name.values() if s.is_push and s.enabled]

    def pull(self) -> list[Subscription]:
        return [s for s in self.by_name.values() if not s.is_push and s.enabled]


def implicit_routes(objects: list[ConfigObject]) -> Iterable[CompiledRoute]:
    """A subscription's own filter is a route to it, named `subscription:<name>`."""
    for obj in objects:
        if obj.kind == "subscriptions" and obj.spec.get("enabled", True) \
                and obj.spec.get("filter") is not None:
            yield CompiledRoute(f"subscription:{obj.name}", compile_filter(obj.spec["filter"]),
                                (("subscription", obj.name),), implicit=True)
