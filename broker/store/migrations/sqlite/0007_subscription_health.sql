-- The circuit breaker of each push subscription, kept in the store so that every
-- process on it sees one breaker (broker/delivery/breaker.py). No row: closed.
CREATE TABLE subscription_health (
    subscription         TEXT PRIMARY KEY,
    state                TEXT NOT NULL,         -- closed | open | half_open
    consecutive_failures INTEGER NOT NULL,
    reopen_at            TEXT NOT NULL,
    last_error           TEXT,
    updated_at           TEXT NOT NULL
);
