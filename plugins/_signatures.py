"""Declarative HMAC verification of webhook requests, shared by the shipped sources.

A scheme says where the signature is, how it is computed and how fresh the request
must be; a preset names a well-known one and any field can override it:

    [plugins.webhook.mappings.pagerduty.verify]
    scheme = "pagerduty"                  # github, pagerduty, stripe, standard-webhooks, grafana
    secret_env = "PAGERDUTY_WEBHOOK_SECRET"

| field | meaning |
|---|---|
| `secret_env` | environment variable holding the secret (required) |
| `header` | the header carrying the signature(s) |
| `algorithm` | `sha256` (default), `sha1`, `sha512` |
| `encoding` | `hex` (default) or `base64` of the digest |
| `prefix` | text before each signature value (`sha256=`, `v1=`, `v1,`) |
| `separator` | splits a header holding several signatures (`,` or ` `); any one may match |
| `signed` | the signed content: `{body}`, `{timestamp}`, `{header.<name>}` (default `{body}`) |
| `timestamp_header` | header holding the request's Unix timestamp |
| `timestamp_prefix` | or: the element of the signature header holding it (Stripe's `t=`) |
| `tolerance` | seconds a timestamped request may be old or early (default 300) |
| `secret_encoding` | `text` (default), `base64`, or `whsec` (Standard Webhooks: `whsec_<base64>`) |

A request whose signature is missing, malformed, wrong or stale is refused with 401
naming the header, never with the expected value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from broker.plugin_host.api import Reject, SourceRequest, whole_number

PRESETS: dict[str, dict[str, Any]] = {
    "github": {"header": "X-Hub-Signature-256", "prefix": "sha256="},
    "pagerduty": {"header": "X-PagerDuty-Signature", "prefix": "v1=", "separator": ","},
    "stripe": {"header": "Stripe-Signature", "prefix": "v1=", "separator": ",",
               "timestamp_prefix": "t=", "signed": "{timestamp}.{body}"},
    "standard-webhooks": {"header": "webhook-signature", "prefix": "v1,", "separator": " ",
                          "encoding": "base64", "timestamp_header": "webhook-timestamp",
                          "signed": "{header.webhook-id}.{timestamp}.{body}",
                          "secret_encoding": "whsec"},
    "grafana": {"header": "X-Grafana-Alerting-Signature"},
}
"""Well-known schemes. Grafana signs `{timestamp}:{body}` when a timestamp header is
configured there: add `timestamp_header` and `signed = "{timestamp}:{body}"`."""

MAX_TIMESTAMP = 10**12
"""Unix seconds far beyond any clock (year 33658): longer text is not a timestamp."""
ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
PLACEHOLDER = re.compile(r"\{(body|timestamp|header\.[A-Za-z0-9_-]+)\}")


@dataclass(frozen=True)
class Scheme:
    """How one sender signs its requests."""

    header: str
    secret_env: str = ""
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""
    separator: str = ""
    signed: str = "{body}"
    timestamp_header: str = ""
    timestamp_prefix: str = ""
    tolerance: float = 300.0
    secret_encoding: str = "text"

    @property
    def timestamped(self) -> bool:
        return bool(self.timestamp_header or self.timestamp_prefix)


def scheme_of(table: Mapping[str, Any], where: str) -> Scheme:
    """A Scheme from a config table (a preset plus overrides); ValueError naming the
    field when it cannot work."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: verify must be a table")
    values = dict(PRESETS.get(str(table.get("scheme", "")), {}))
    if table.get("scheme") and str(table["scheme"]) not in PRESETS:
        raise ValueError(f"{where}: verify.scheme {table['scheme']!r} is not one of"
                         f" {', '.join(PRESETS)}")
    known = {f.name for f in fields(Scheme)}
    for key, value in table.items():
        if key == "scheme":
            continue
        if key not in known:
            raise ValueError(f"{where}: verify.{key} is not a known field"
                             f" ({', '.join(sorted(known | {'scheme'}))})")
        values[key] = value
    if not values.get("header"):
        raise ValueError(f"{where}: verify needs a header (or a scheme)")
    if not values.get("secret_env"):
        raise ValueError(f"{where}: verify needs secret_env, the variable holding the secret")
    if values.get("algorithm", "sha256") not in ALGORITHMS:
        raise ValueError(f"{where}: verify.algorithm must be one of {', '.join(ALGORITHMS)}")
    if values.get("encoding", "hex") not in ("hex", "base64"):
        raise ValueError(f"{where}: verify.encoding must be hex or base64")
    if values.get("secret_encoding", "text") not in ("text", "base64", "whsec"):
        raise ValueError(f"{where}: verify.secret_encoding must be text, base64 or whsec")
    scheme = Scheme(**{**values, "tolerance": float(values.get("tolerance", 300.0))})
    if "{timestamp}" in scheme.signed and not scheme.timestamped:
        raise ValueError(f"{where}: verify.signed uses {{timestamp}}: name timestamp_header"
                         " or timestamp_prefix")
    return scheme


def secret_key(scheme: Scheme, secret: str) -> bytes:
    """The HMAC key from the secret as configured."""
    if scheme.secret_encoding == "text":
        return secret.encode()
    text = secret.removeprefix("whsec_") if scheme.secret_encoding == "whsec" else secret
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise Reject(f"the signing secret in {scheme.secret_env} is not base64", 503) from None


def sign(scheme: Scheme, key: bytes, content: bytes) -> str:
    """The signature value (without prefix) of `content`."""
    digest = hmac.new(key, content, ALGORITHMS[scheme.algorithm]).digest()
    return digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()


def signed_content(scheme: Scheme, request: SourceRequest, timestamp: str) -> bytes:
    """The bytes the sender signed, from the `signed` template."""
    parts = PLACEHOLDER.split(scheme.signed)
    out = bytearray()
    for index, part in enumerate(parts):
        if index % 2 == 0:
            out += part.encode()
        elif part == "body":
            out += request.body
        elif part == "timestamp":
            out += timestamp.encode()
        else:
            value = request.headers.get(part.removeprefix("header."))
            if value is None:
                raise Reject(f"the {part.removeprefix('header.')} header is missing", 401)
            out += value.encode()
    return bytes(out)


def verify(scheme: Scheme, request: SourceRequest, secret: str | None,
           now: Callable[[], float] = time.time) -> None:
    """Refuse the request (Reject 401) unless one of its signatures is right and, for a
    timestamped scheme, it is within `tolerance` of `now`."""
    if secret is None:
        raise Reject(f"the signing secret variable {scheme.secret_env} is not set", 503)
    given = request.headers.get(scheme.header)
    if not given:
        raise Reject(f"the {scheme.header} header is missing", 401)
    elements = [e.strip() for e in (given.split(scheme.separator) if scheme.separator
                                    else [given])]
    timestamp = ""
    if scheme.timestamp_prefix:
        timestamp = next((e[len(scheme.timestamp_prefix):] for e in elements
                          if e.startswith(scheme.timestamp_prefix)), "")
    elif scheme.timestamp_header:
        timestamp = (request.headers.get(scheme.timestamp_header) or "").strip()
    if scheme.timestamped:
        try:
            seconds = whole_number(timestamp, maximum=MAX_TIMESTAMP)
        except ValueError:
            where = scheme.timestamp_header or f"{scheme.header} {scheme.timestamp_prefix}"
            raise Reject(f"the request timestamp ({where}) is missing or not Unix seconds",
                         401) from None
        if abs(now() - seconds) > scheme.tolerance:
            raise Reject(f"the request timestamp is more than {scheme.tolerance:g}s away from"
                         " now (a replay, or a clock off)", 401)
    candidates = [e[len(scheme.prefix):] for e in elements if e.startswith(scheme.prefix)]
    if not candidates:
        raise Reject(f"the {scheme.header} header has no {scheme.prefix or 'signature'}"
                     " value", 401)
    expected = sign(scheme, secret_key(scheme, secret),
                    signed_content(scheme, request, timestamp)).encode()
    if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
        raise Reject(f"the {scheme.header} signature does not match the request", 401)
