"""API tokens as stored: a name, the sha256 of the secret, scopes and source patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from broker.auth.principal import Principal

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
"""Token names: what todo changes record as the operator."""
RESERVED_NAMES = frozenset({"admin", "local", "system"})
"""Names the broker's own principals use: a named token may not pose as them."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A named token. Only `digest` (hex sha256 of the secret) is kept, never the secret."""

    name: str
    digest: str
    scopes: tuple[str, ...]
    sources: tuple[str, ...]
    created_at: str
    created_by: str

    def principal(self) -> Principal:
        return Principal(self.name, frozenset(self.scopes), self.sources)

    def to_dict(self) -> dict[str, Any]:
        """What `GET /v1/tokens` shows: everything but the digest."""
        return {"name": self.name, "scopes": list(self.scopes), "sources": list(self.sources),
                "created_at": self.created_at, "created_by": self.created_by}
