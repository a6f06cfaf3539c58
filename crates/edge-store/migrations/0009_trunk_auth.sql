-- Carriers' own outbound authentication beside digest (issue 19 item 6): Telnyx IP connections identify a
-- call by a tech prefix on the dialled number, an X-Telnyx-Token header (sealed like the password) or a
-- P-Charge-Info header. Portable on SQLite and PostgreSQL (one column per statement).
ALTER TABLE phone_numbers ADD COLUMN tech_prefix TEXT;
ALTER TABLE phone_numbers ADD COLUMN ip_auth_token_sealed TEXT;
ALTER TABLE phone_numbers ADD COLUMN p_charge_info BIGINT NOT NULL DEFAULT 0;
