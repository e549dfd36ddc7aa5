"""64-bit keys of event identities and links: what the log's indexes hold instead of text."""

from __future__ import annotations

import hashlib
import struct

IDENTITY, CORRELATION, CAUSATION = 0, 1, 2
"""The kinds of key a key table row holds (SQLite files keys by period, `kind` apart)."""


BLAKE2B_64 = hashlib.blake2b(digest_size=8)
"""A fresh 8-byte blake2b state: a copy of it hashes like `blake2b(digest_size=8)`,
without parsing the keyword and setting the parameters up again (a key is made for
every event appended)."""
SIGNED_64 = struct.Struct(">q").unpack
"""Big-endian bytes to a signed 64-bit int, as `int.from_bytes(signed=True)`."""


def key64(*parts: str) -> int:
    """A signed 64-bit blake2b hash of the parts joined by NUL (a PostgreSQL bigint)."""
    state = BLAKE2B_64.copy()
    state.update("\0".join(parts).encode())
    return int(SIGNED_64(state.digest())[0])


def identity_key(source: str, id: str) -> int:
    """The key of an event's (source, id): the dedupe index's entry."""
    return key64(source, id)


def link_key(value: object) -> int | None:
    """The key of a correlation or causation id (None when absent)."""
    return None if value is None else key64(str(value))
