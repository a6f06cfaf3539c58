-- Mutual TLS toward a customer's own trunk (issue 20 item 2): the client certificate (PEM, public) and its
-- private key (sealed like the trunk password). Portable on SQLite and PostgreSQL (one column per statement).
ALTER TABLE phone_numbers ADD COLUMN tls_client_certificate TEXT;
ALTER TABLE phone_numbers ADD COLUMN tls_client_key_sealed TEXT;
