-- Call records written by the SIP side (start, answer, end) and read by `/v1/calls`.
-- Same portable conventions as 0001: TEXT ids, BIGINT epoch milliseconds, TEXT JSON.
-- No foreign keys on phone_number_id/agent_id: a call outlives the number or agent it used.

CREATE TABLE calls (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    direction        TEXT NOT NULL,
    carrier          TEXT NOT NULL,
    from_number      TEXT NOT NULL,
    caller_name      TEXT,
    to_number        TEXT NOT NULL,
    phone_number_id  TEXT,
    status           TEXT NOT NULL,
    answered_by      TEXT,
    agent_id         TEXT,
    hops_json        TEXT NOT NULL,
    end_reason       TEXT,
    hangup_by        TEXT,
    sip_status       BIGINT,
    sip_call_id      TEXT NOT NULL,
    error_code       TEXT,
    error_message    TEXT,
    created_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    ended_at         BIGINT,
    updated_at       BIGINT NOT NULL
);
-- Keyset pagination (newest first) per account, and per number within an account.
CREATE INDEX calls_account_page ON calls (account_id, created_at, id);
CREATE INDEX calls_account_number_page ON calls (account_id, phone_number_id, created_at, id);
