-- Per-call SIP traces (issue 22 item 1): every SIP message of a call's legs, secrets removed, stored once
-- as one compact text document when the call ends (the API builds the JSON when it is read); purged after `[observability] trace_retention_days`.
CREATE TABLE call_traces (
    call_id     TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    messages    BIGINT NOT NULL,
    body        TEXT NOT NULL
);
-- The purge finds old traces without reading the whole table.
CREATE INDEX call_traces_created ON call_traces (created_at);
