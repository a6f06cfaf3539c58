-- Voicemail recordings left by callers, read and deleted through `/v1/voicemails`.
-- Same portable conventions as 0001: TEXT ids, BIGINT epoch milliseconds.
-- No foreign keys on call_id/phone_number_id: a voicemail outlives the number it was left on,
-- and the call record is written by a different task.
-- recording_path is relative to the edge's data dir (e.g. `voicemail/vm_abc.wav`).

CREATE TABLE voicemails (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    call_id          TEXT NOT NULL,
    phone_number_id  TEXT,
    caller           TEXT NOT NULL,
    to_number        TEXT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    ended_by         TEXT NOT NULL,
    recording_path   TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
-- Keyset pagination (newest first) per account, and per number within an account.
CREATE INDEX voicemails_account_page ON voicemails (account_id, created_at, id);
CREATE INDEX voicemails_account_number_page ON voicemails (account_id, phone_number_id, created_at, id);
