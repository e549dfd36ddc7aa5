"""64-bit keys of event identities and links: what the log's indexes hold instead of text."""

from __future__ import annotations

import hashlib

IDENTITY, CORRELATION, CAUSATION = 0, 1, 2
"""The kinds of key a key table row holds (SQLite files keys by period, `kind` apart)."""


def key64(*parts: str) -> int:
    """A signed 64-bit blake2b hash of the parts joined by NUL (a PostgreSQL bigint)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def identity_key(source: str, id: str) -> int:
    """The key of an event's (source, id): the dedupe index's entry."""
    return key64(source, id)


def link_key(value: object) -> int | None:
    """The key of a correlation or causation id (None when absent)."""
    return None if value is None else key64(str(value))
