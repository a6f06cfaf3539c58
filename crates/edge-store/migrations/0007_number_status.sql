-- Numbers being bought are stored first with status 'pending' (visible, never routed), then
-- become 'active', or 'failed' with the provider's reason here. Portable on SQLite and PostgreSQL.
ALTER TABLE phone_numbers ADD COLUMN failure_reason TEXT;
