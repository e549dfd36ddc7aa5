"""The principal a request acts as: set by the authentication middleware, read by handlers.

Handlers never look at headers to learn who is calling; they ask `principal_of(request)`
and `require(request, scope)`. With authentication off (`--no-auth`) every request acts
as the local, all-scopes principal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from aiohttp import web

SCOPES = ("publish", "read", "operate", "force", "admin")
"""`publish` events (optionally limited to source patterns), `read` events/items/config,
`operate` todo items (claim, resolve, re-emit, comment, silence), `force` take over or
release another operator's claim, `admin` everything (configuration, tokens, backups)."""



@dataclass(frozen=True)
class Principal:
    name: str
    """The token's name: the operator recorded for every change this caller makes."""
    scopes: frozenset[str]
    sources: tuple[str, ...] = field(default=())
    """Source patterns (fnmatch) a `publish` scope is limited to; empty means any."""

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def may_publish_source(self, source: str) -> bool:
        if "admin" in self.scopes or not self.sources:
            return True
        return any(fnmatchcase(source, pattern) for pattern in self.sources)


LOCAL = Principal(name="local", scopes=frozenset(SCOPES))
"""Authentication off: every caller is this one."""


def principal_of(request: web.Request) -> Principal:
    found = request.get("principal")
    return found if isinstance(found, Principal) else LOCAL
