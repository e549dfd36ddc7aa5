"""Checks shared by the configuration kinds that describe outbound calls (subscriptions'
webhooks, actions): static header tables and http(s) URLs."""

from __future__ import annotations

from typing import Any

import yarl

from broker.errors import InvalidConfig
from broker.outbound import header_name_ok


def validate_headers(value: Any, what: str) -> dict[str, str]:
    """Static request headers: token names, values without control characters."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} must be a table of header names to strings")
    for name, text in value.items():
        if not header_name_ok(name):
            raise InvalidConfig(f"{what}: {name!r} is not a valid header name")
        if not isinstance(text, str) or any(ord(c) < 32 and c != "\t" for c in text):
            raise InvalidConfig(f"{what}.{name} must be a string without control characters")
    return dict(value)


def validate_http_url(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidConfig(f"{what} must be an http(s) URL")
    try:
        url = yarl.URL(value)
    except ValueError as exc:
        raise InvalidConfig(f"{what}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidConfig(f"{what} must be an http(s) URL with a host, got {value!r}")
    return value
