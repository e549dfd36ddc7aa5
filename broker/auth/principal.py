"""The principal a request acts as: set by the authentication middleware, read by handlers.

Handlers never look at headers to learn who is calling; they ask `principal_of(request)`
and `require(request, scope)`. With authentication off (`--no-auth`) every request acts
as the local, all-scopes principal.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    limits_sources: bool = field(init=False, repr=False, compare=False)
    """Whether this principal may publish only some sources (worked out once: every
    publish asks)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits_sources",
                           bool(self.sources) and "admin" not in self.scopes)

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def may_publish_source(self, source: str) -> bool:
        if not self.limits_sources:
            return True
        return any(fnmatchcase(source, pattern) for pattern in self.sources)


def check_sources(principal: Principal, sources: Iterable[str]) -> None:
    """Forbidden naming the first source outside the token's publish patterns (the
    sources are not looked at when the token may publish any)."""
    if not principal.limits_sources:
        return
    from broker.errors import Forbidden

    for source in sources:
        if not principal.may_publish_source(source):
            raise Forbidden(f"token {principal.name!r} may publish only sources matching"
                            f" {', '.join(principal.sources)}; this names source {source!r}",
                            source=source, token=principal.name)


LOCAL = Principal(name="local", scopes=frozenset(SCOPES))
"""Authentication off: every caller is this one."""


def principal_of(request: web.Request) -> Principal:
    try:  # not `request.get`: that is Mapping's, a Python frame more per request
        found = request["principal"]
    except KeyError:
        return LOCAL
    return found if isinstance(found, Principal) else LOCAL


ANONYMOUS = Principal(name="anonymous", scopes=frozenset())
"""Authentication on, and a route that takes no API token (health, a source's webhook,
a public proxy mount): whatever it does, it does with no scope."""
