"""Named API tokens: created (the secret shown once), listed, revoked, and looked up
for every request by the sha256 of the secret presented.

Lookups are cheap: a small in-memory cache keyed by the digest, emptied of a token the
moment this process revokes it and kept for at most `cache_s` otherwise, so a token
revoked through another replica stops working within that time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from broker.auth.model import NAME, RESERVED_NAMES, TokenRecord
from broker.auth.principal import SCOPES, Principal
from broker.auth.repository import TokenRepository
from broker.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from broker.bus import Bus, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

SECRET_PREFIX = "opsbus_"
"""Marks a secret as an opsbus token, for people and for secret scanners."""
ADMIN = "admin"
"""The name of the admin token's principal (the data directory's and `--token`)."""
CACHE_MAX = 4096
ADMIN_PRINCIPAL = Principal(ADMIN, frozenset(SCOPES))
"""Who an admin secret stands for (one object: it is asked for on every request)."""
UNCACHED = Principal("(not cached)", frozenset())
"""`Tokens.cached`: the store has to be asked (never a request's principal)."""


def digest_of(secret: str) -> str:
    """The hex sha256 of a secret: all the store keeps of it."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_scopes(scopes: object, sources: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Scopes and source patterns of a new token, or BadRequest naming the problem."""
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str)
                                                              for s in scopes):
        raise BadRequest(f"scopes must be a non-empty list of: {', '.join(SCOPES)}",
                         field="scopes")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise BadRequest(f"unknown scope {unknown[0]!r} (known: {', '.join(SCOPES)})",
                         field="scopes")
    if sources is None:
        sources = []
    if not isinstance(sources, list) or not all(isinstance(s, str) and s.strip()
                                                for s in sources):
        raise BadRequest("sources must be a list of source patterns such as 'ci/*'",
                         field="sources")
    if sources and "publish" not in scopes:
        raise BadRequest("sources limit the publish scope: give it too", field="sources")
    ordered = tuple(s for s in SCOPES if s in scopes)
    return ordered, tuple(dict.fromkeys(s.strip() for s in sources))


class Tokens:
    """The broker's tokens: the admin secrets (the data directory's `admin.token` and
    `--token`) and the named ones in the store."""

    def __init__(self, repo: TokenRepository, bus: Bus, clock: Clock,
                 cache_s: float = 1.0) -> None:
        self.repo = repo
        self.bus = bus
        self.clock = clock
        self.cache_s = cache_s
        self._admin: list[str] = []
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._digests: dict[str, tuple[str, bool]] = {}
        """Secrets presented lately, their digests and whether they are an admin secret: a
        client sends the same one on every request, and hashing it and comparing the
        digest with the admin ones is the larger part of checking it."""

    def add_admin_secrets(self, found: Iterable[str]) -> None:
        self._admin.extend(digest_of(s) for s in found if s)
        self._digests.clear()  # what was not an admin secret may be one now

    def cached(self, secret: str) -> Principal | None:
        """The principal a presented secret stands for when that is known without the
        store (an admin secret, or a token looked up within `cache_s`): None when it is
        no token, UNCACHED when `authenticate` has to ask the store."""
        seen = self._digests.get(secret)
        if seen is None:
            digest = digest_of(secret)
            admin = False
            for known in self._admin:
                admin = hmac.compare_digest(known, digest) or admin
            if len(self._digests) >= CACHE_MAX:
                self._digests.clear()  # unknown secrets must not grow it without bound
            seen = self._digests[secret] = (digest, admin)
        if seen[1]:
            return ADMIN_PRINCIPAL
        # A monotonic reading, not the broker's clock: a cached token must expire even
        # when a test holds the broker's clock still.
        cached = self._cache.get(seen[0])
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return UNCACHED

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal a presented secret stands for; None when it is no token."""
        found = self.cached(secret)
        if found is not UNCACHED:
            return found
        now = time.monotonic()
        digest = digest_of(secret)
        record = await self.repo.by_digest(digest)
        found = (record.principal() if record is not None
                 and hmac.compare_digest(record.digest, digest) else None)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()  # unknown secrets must not grow it without bound
        self._cache[digest] = (now + self.cache_s, found)
        return found

    async def create(self, name: object, scopes: object, sources: object, by: str
                     ) -> tuple[TokenRecord, str]:
        """A new token and its secret (shown this once; only its digest is stored)."""
        if not isinstance(name, str) or not NAME.match(name):
            raise BadRequest("name must be 1-64 letters, digits, '.', '_', '@' or '-',"
                             " starting with a letter or digit", field="name")
        if name in RESERVED_NAMES or name.startswith("opsbus"):
            raise BadRequest(f"{name!r} is reserved for the broker's own principals",
                             field="name")
        scope_list, source_list = check_scopes(scopes, sources)
        secret = new_secret()
        record = TokenRecord(name, digest_of(secret), scope_list, source_list,
                             self.clock.stamp(), by)

        async def unit(ctx: WriteContext) -> bool:
            return await self.repo.writes(ctx.transaction).add(record)

        if not await self.bus.run(unit):
            raise Conflict(f"a token named {name!r} exists: revoke it first", name=name)
        log.info("token %r created by %s with scopes %s", name, by, ", ".join(scope_list))
        return record, secret

    async def list(self) -> list[TokenRecord]:
        return await self.repo.all()

    async def revoke(self, name: str, by: str) -> None:
        async def unit(ctx: WriteContext) -> bool:
            return await self.repo.writes(ctx.transaction).revoke(name)

        if not await self.bus.run(unit):
            raise NotFound(f"no token named {name!r}", name=name)
        # This process forgets it at once; other replicas within cache_s.
        self._cache = {d: entry for d, entry in self._cache.items()
                       if entry[1] is None or entry[1].name != name}
        log.info("token %r revoked by %s", name, by)
