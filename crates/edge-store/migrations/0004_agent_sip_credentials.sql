-- SIP digest credentials an agent uses to authenticate the INVITEs it sends for outbound calls.
-- Same portable conventions as 0001. A unique index rather than a UNIQUE column: SQLite cannot
-- add a UNIQUE column with ALTER TABLE. NULLs never collide, so agents without credentials are fine.
-- sip_password_sealed is SecretBox ciphertext bound to `agents.sip_password:{agent_id}`.

ALTER TABLE agents ADD COLUMN sip_username TEXT;
ALTER TABLE agents ADD COLUMN sip_password_sealed TEXT;
CREATE UNIQUE INDEX agents_sip_username ON agents (sip_username);
