"""asyncpg, loaded only when a PostgreSQL store is used, with an install hint if missing."""

from __future__ import annotations

from types import ModuleType

from broker.errors import InvalidConfig

INSTALL_HINT = "pip install 'opsbus[postgres]' (or: pip install asyncpg)"


def asyncpg_module() -> ModuleType:
    """The asyncpg package; InvalidConfig naming the install command when it is absent."""
    try:
        import asyncpg
    except ModuleNotFoundError:
        raise InvalidConfig(
            f"the PostgreSQL store needs the asyncpg package: {INSTALL_HINT}"
        ) from None
    return asyncpg
