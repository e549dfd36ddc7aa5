-- Deliveries to push and pull subscriptions with their attempts, operator pauses,
-- the shared circuit breaker, and API action jobs (docs/postgres.md, sections 3 and 7).
--
-- `next_at` (a stamp: RFC 3339 UTC, which sorts as text) is when a row is next due: for `pending` rows the next
-- attempt, for `leased` rows the lease expiry (an expired lease is due again), so one
-- index serves claims by every replica, pull receives and recovery after a crash.

CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    subscription    text NOT NULL,
    seq             bigint NOT NULL,
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    attempts_before integer NOT NULL DEFAULT 0,
    next_at         text NOT NULL,
    lease           text,
    last_status     integer,
    last_error      text,
    first_at        text NOT NULL,
    created_at      text NOT NULL,
    updated_at      text NOT NULL
);
CREATE UNIQUE INDEX deliveries_identity ON deliveries (subscription, seq);
CREATE INDEX deliveries_open_by_seq ON deliveries (subscription, seq)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_open_by_due ON deliveries (subscription, next_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);

CREATE TABLE delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES deliveries (id),
    n           integer NOT NULL,
    lease       text NOT NULL,
    started_at  text NOT NULL,
    outcome     text NOT NULL,
    status      integer,
    latency_ms  double precision,
    error       text,
    PRIMARY KEY (delivery_id, n)
);

CREATE TABLE subscription_controls (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL,
    paused_by  text,
    updated_at text NOT NULL
);

-- The breaker of each push subscription, shared: every replica checks it before
-- claiming, and exactly one wins the half-open probe by a conditional update.
CREATE TABLE subscription_health (
    subscription         text PRIMARY KEY,
    state                text NOT NULL,         -- closed | open | half_open
    consecutive_failures integer NOT NULL,
    reopen_at            text NOT NULL,
    last_error           text,
    updated_at           text NOT NULL
);

CREATE TABLE action_jobs (
    id         bigserial PRIMARY KEY,
    action     text NOT NULL,
    seq        bigint NOT NULL,
    state      text NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    next_at    text NOT NULL,
    lease      text,
    params     jsonb,
    todo_id    bigint,
    operator   text,
    result_seq bigint,
    last_error text,
    created_at text NOT NULL,
    updated_at text NOT NULL
);
CREATE INDEX action_jobs_due ON action_jobs (next_at) WHERE state IN ('pending', 'running');
CREATE INDEX action_jobs_by_action ON action_jobs (action, id);
