"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, `webhook-signature`."""

from __future__ import annotations

import base64
import hashlib
import hmac

from broker.numbers import whole_number


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a Standard Webhooks receiver verifies."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, msg_id, timestamp, body)}


def verify(key: bytes, headers: dict[str, str], body: bytes) -> bool:
    """True when one of the space-separated `v1,` signatures matches (for receivers)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = whole_number(lowered["webhook-timestamp"])
        expected = signature(key, lowered["webhook-id"], timestamp, body)
    except (KeyError, ValueError):
        return False
    return any(hmac.compare_digest(expected, given)
               for given in lowered.get("webhook-signature", "").split())
