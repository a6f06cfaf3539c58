-- Who carries out an agent's transfer to a telephone number: NULL or 'edge' (the edge dials it through
-- the number's trunk), 'carrier' (the REFER goes on to the carrier). Portable on SQLite and PostgreSQL.
ALTER TABLE phone_numbers ADD COLUMN inbound_transfer TEXT;
