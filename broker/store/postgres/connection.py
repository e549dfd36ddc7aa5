"""PostgreSQL connections: session settings that bound a stuck writer, the pool, and
the dedicated connections (listener, admin) that must not come from the pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from broker.errors import InvalidConfig, Unavailable
from broker.store.postgres.driver import asyncpg_module

if TYPE_CHECKING:
    from typing import TypeAlias

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
    """A connection of our own or one lent by the pool."""

log = logging.getLogger(__name__)

SCHEMES = ("postgresql", "postgres")


def is_postgres_url(value: str) -> bool:
    """True when a `store` setting names a PostgreSQL database."""
    return urlsplit(value).scheme in SCHEMES


@dataclass(frozen=True)
class PgOptions:
    """How the store talks to PostgreSQL (docs/postgres.md, section 1)."""

    dsn: str
    """postgresql://user@host:port/db; query parameters asyncpg does not know (such as
    `search_path`) are session settings."""
    pool_size: int = 8
    """Most pooled connections per replica (plus one listener connection)."""
    lock_timeout_ms: int = 5000
    """An append waiting this long for the log's lock fails instead of hanging."""
    statement_timeout_ms: int = 30000
    """No statement (so no holder of the log's lock) runs longer."""
    idle_in_transaction_timeout_ms: int = 15000
    """A replica frozen inside a transaction loses its session, and the lock with it."""
    poll_s: float = 0.5
    """Seconds between checks of the log head, whatever the notifications say."""

    @classmethod
    def from_url(cls, url: str, **defaults: float) -> PgOptions:
        """Options from a store URL; `pool_size` in its query is ours, not a session
        setting, and is taken out."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        ours = {k: v for k, v in query if k == "pool_size"}
        rest = urlencode([(k, v) for k, v in query if k != "pool_size"])
        options: dict[str, float] = dict(defaults)
        if "pool_size" in ours:
            try:
                options["pool_size"] = int(ours["pool_size"])
            except ValueError:
                raise InvalidConfig(f"pool_size in the store URL must be a number, got"
                                    f" {ours['pool_size']!r}", field="store") from None
            if options["pool_size"] < 1:
                raise InvalidConfig("pool_size in the store URL must be at least 1",
                                    field="store")
        return cls(parts._replace(query=rest).geturl(), **options)  # type: ignore[arg-type]

    def session_settings(self) -> dict[str, str]:
        """Defaults for the settings the DSN does not set itself."""
        given = {k for k, _ in parse_qsl(urlsplit(self.dsn).query)}
        wanted = {
            "lock_timeout": str(self.lock_timeout_ms),
            "statement_timeout": str(self.statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(self.idle_in_transaction_timeout_ms),
            "application_name": "opsbus",
        }
        return {k: v for k, v in wanted.items() if k not in given}

    def redacted(self) -> str:
        """The DSN without its password, for logs and errors."""
        parts = urlsplit(self.dsn)
        if parts.password is None:
            return self.dsn
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


def check_url(dsn: str) -> None:
    """Reject a store URL that cannot name a PostgreSQL database, naming the problem."""
    parts = urlsplit(dsn)
    if parts.scheme not in SCHEMES:
        raise InvalidConfig(f"store must be sqlite or a postgresql:// URL, got {dsn!r}",
                            field="store")
    if not parts.path.strip("/"):
        raise InvalidConfig("the PostgreSQL store URL must name a database"
                            " (postgresql://user@host:5432/dbname)", field="store")
    PgOptions.from_url(dsn)


async def connect(options: PgOptions) -> asyncpg.Connection:
    """One connection outside the pool (the listener, migrations, tools)."""
    driver = asyncpg_module()
    try:
        conn: asyncpg.Connection = await driver.connect(
            options.dsn, server_settings=options.session_settings()
        )
    except (OSError, driver.PostgresError, driver.InterfaceError) as exc:
        raise Unavailable(f"cannot connect to PostgreSQL at {options.redacted()}: {exc}"
                          ) from None
    return conn


async def create_pool(options: PgOptions) -> asyncpg.Pool:
    """The replica's pool; every connection carries the session settings."""
    driver = asyncpg_module()
    try:
        pool: asyncpg.Pool = await driver.create_pool(
            options.dsn, min_size=1, max_size=options.pool_size,
            server_settings=options.session_settings(),
        )
    except (OSError, driver.PostgresError, driver.InterfaceError) as exc:
        raise Unavailable(f"cannot connect to PostgreSQL at {options.redacted()}: {exc}"
                          ) from None
    return pool


async def check_server(conn: asyncpg.Connection) -> None:
    """Refuse settings under which a committed seq could be lost and reissued."""
    mode = await conn.fetchval("SHOW synchronous_commit")
    if mode == "off":
        raise InvalidConfig(
            "PostgreSQL runs with synchronous_commit = off: a crash could erase events"
            " that readers already saw and hand their seqs out again; set it to on"
        )
