-- Todo items, their events and history, per-queue counts, and silences.

CREATE TABLE todos (
    id              bigserial PRIMARY KEY,
    queue           text NOT NULL,
    key             text NOT NULL,
    title           text NOT NULL,
    state           text NOT NULL,
    priority        text,
    owner           text,
    lease_expires   text,
    snoozed_until   text,
    count           bigint NOT NULL,
    first_seen      text NOT NULL,
    last_seen       text NOT NULL,
    created_at      text NOT NULL,
    updated_at      text NOT NULL,
    resolved_at     text,
    resolution      jsonb,
    event_seq       bigint NOT NULL,
    first_event_seq bigint NOT NULL
);
-- At most one unresolved item per group key and queue: grouping relies on it.
CREATE UNIQUE INDEX todos_active_key ON todos (queue, key) WHERE state <> 'resolved';
-- Listing one queue's items in one view by latest activity, in index order.
CREATE INDEX todos_listing ON todos (queue, state, updated_at DESC, id DESC);
CREATE INDEX todos_activity ON todos (updated_at DESC, id DESC);
-- Claimable and due rows only (the claim and the sweeper).
CREATE INDEX todos_leases ON todos (lease_expires) WHERE state = 'claimed';
CREATE INDEX todos_snoozes ON todos (snoozed_until) WHERE snoozed_until IS NOT NULL;
CREATE INDEX todos_oldest_open ON todos (queue, first_seen) WHERE state = 'open';

CREATE TABLE todo_events (
    todo_id bigint NOT NULL REFERENCES todos (id),
    seq     bigint NOT NULL,
    PRIMARY KEY (todo_id, seq)
);

CREATE TABLE todo_history (
    id        bigserial PRIMARY KEY,
    todo_id   bigint NOT NULL REFERENCES todos (id),
    at        text NOT NULL,
    action    text NOT NULL,
    operator  text,
    note      text,
    event_seq bigint,
    audit_seq bigint,
    detail    jsonb
);
CREATE INDEX todo_history_item ON todo_history (todo_id, id);

CREATE TABLE silences (
    id         bigserial PRIMARY KEY,
    matcher    jsonb NOT NULL,
    queue      text,
    comment    text NOT NULL,
    author     text NOT NULL,
    created_at text NOT NULL,
    ends_at    text NOT NULL,
    expired_by text
);
CREATE INDEX silences_ends ON silences (ends_at);
