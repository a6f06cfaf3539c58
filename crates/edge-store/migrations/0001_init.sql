-- Portable schema: valid on SQLite and PostgreSQL alike.
-- Ids are TEXT with a type prefix, timestamps are BIGINT unix epoch milliseconds,
-- JSON is TEXT, secrets are TEXT ciphertext ("v1." + base64(nonce || AEAD output)).

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE agents (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    sip_uri              TEXT NOT NULL,
    max_concurrent_calls BIGINT NOT NULL,
    voicemail_message    TEXT,
    status               TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX agents_account_page ON agents (account_id, created_at, id);

CREATE TABLE integrations (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    provider        TEXT NOT NULL,
    api_key_sealed  TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX integrations_account_page ON integrations (account_id, created_at, id);

CREATE TABLE phone_numbers (
    id                         TEXT PRIMARY KEY,
    account_id                 TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    phone_number               TEXT NOT NULL UNIQUE,
    friendly_name              TEXT,
    agent_id                   TEXT NOT NULL REFERENCES agents (id),
    status                     TEXT NOT NULL,
    provider                   TEXT NOT NULL,
    source                     TEXT NOT NULL,
    provider_ref               TEXT,
    -- inbound_enabled = 0 means outbound-only (the API's "inbound_routing": null).
    inbound_enabled            BIGINT NOT NULL,
    inbound_agent_id           TEXT REFERENCES agents (id),
    inbound_fallback_agent_id  TEXT REFERENCES agents (id),
    inbound_voicemail_message  TEXT,
    trunk_address              TEXT,
    auth_username              TEXT,
    auth_password_sealed       TEXT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE INDEX phone_numbers_account_page ON phone_numbers (account_id, created_at, id);
CREATE INDEX phone_numbers_agent ON phone_numbers (agent_id);
CREATE INDEX phone_numbers_inbound_agent ON phone_numbers (inbound_agent_id);
CREATE INDEX phone_numbers_fallback_agent ON phone_numbers (inbound_fallback_agent_id);
