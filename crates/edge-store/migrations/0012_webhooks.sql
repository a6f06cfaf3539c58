-- Webhooks (issue 22 item 4): an account's endpoints, and the outbox of signed deliveries to them.
-- Deliveries are inserted in the same transaction as the call or voicemail record that caused them, so
-- no event is lost after a crash; `(webhook_id, event_key)` is unique, so an event is queued once however
-- often its record is written. Same portable conventions as 0001: TEXT ids, BIGINT epoch milliseconds.
CREATE TABLE webhooks (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    -- Comma-separated event names.
    events         TEXT NOT NULL,
    secret_sealed  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX webhooks_account_page ON webhooks (account_id, created_at, id);
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    event_key        TEXT NOT NULL,
    body             TEXT NOT NULL,
    -- pending | delivered | failed (gave up)
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    response_code    BIGINT,
    last_error       TEXT,
    next_attempt_at  BIGINT NOT NULL,
    -- A node sending it holds it until then; another node may take it over after (a crashed sender).
    claimed_until    BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (webhook_id, event_key);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_page ON webhook_deliveries (webhook_id, created_at, id);
