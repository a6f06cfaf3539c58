-- Idempotency-Key records: the answer to a POST that bought or created something, replayed
-- for 24 h when the same account sends the same key again. Same portable conventions as 0001.
-- status_code NULL: the first request is still running. request_hash is SHA-256 (hex) of
-- method, path and body, so the same key with another body is recognised and refused.

CREATE TABLE idempotency_keys (
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   BIGINT,
    response_body TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
