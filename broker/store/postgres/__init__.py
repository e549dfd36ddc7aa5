"""The PostgreSQL backend, for several `opsbus serve` replicas on one database: asyncpg
(imported only when this backend is chosen), a commit-ordered log, claims in the
database, LISTEN/NOTIFY wake-ups and a live tail per replica (docs/postgres.md)."""
