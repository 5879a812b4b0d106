-- Switchboard store, SQLite schema. Times are unix milliseconds computed by the application.

-- Events waiting to be delivered, one queue per (direction, consumer_key), FIFO by id.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    direction    TEXT    NOT NULL,
    consumer_key TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    available_at INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX outbox_consumer_idx ON outbox (direction, consumer_key, id);
CREATE INDEX outbox_available_idx ON outbox (direction, available_at);

-- Events that were permanently rejected, kept for inspection and manual retry.
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    direction    TEXT    NOT NULL,
    consumer_key TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    failed_at    INTEGER NOT NULL
);

-- Idempotency keys (webhook event ids, channel message ids) with their expiry.
CREATE TABLE dedup (
    key        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX dedup_expires_idx ON dedup (expires_at);

-- One row per channel consumer: LivePerson identity and current conversation.
CREATE TABLE consumers (
    key             TEXT    PRIMARY KEY,
    ext_consumer_id TEXT,
    lp_consumer_id  TEXT,
    jws             TEXT,
    conversation_id TEXT,
    dialog_id       TEXT,
    state           TEXT    NOT NULL DEFAULT 'none',
    updated_at      INTEGER NOT NULL
);
CREATE INDEX consumers_conversation_idx ON consumers (conversation_id);
CREATE INDEX consumers_lp_consumer_idx ON consumers (lp_consumer_id);

-- Highest metaDataLastUpdateTs seen per conversation (drops stale webhook notifications).
CREATE TABLE conversation_clocks (
    conversation_id TEXT    PRIMARY KEY,
    ts              INTEGER NOT NULL
);

-- Small key/value state owned by channels (e.g. a polling offset).
CREATE TABLE channel_state (
    scope      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
