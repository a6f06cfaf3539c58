-- SRTP per leg (issue 20 item 3): an agent's and a customer trunk's media_encryption, NULL meaning 'none'
-- ('none' | 'srtp' | 'srtp_required'). Portable on SQLite and PostgreSQL (one column per statement).
ALTER TABLE agents ADD COLUMN media_encryption TEXT;
ALTER TABLE phone_numbers ADD COLUMN media_encryption TEXT;
