-- The first characters of each API key (`oik_` and 8 hex digits), so keys can be listed and told
-- apart without ever showing a key again. NULL for keys created before this migration.
-- Same portable conventions as 0001.

ALTER TABLE api_keys ADD COLUMN key_prefix TEXT;
CREATE INDEX api_keys_account_page ON api_keys (account_id, created_at, id);
