-- The id of the named proxy key a request came with (0 for the unnamed ones): a rotation
-- changes the key's fingerprint but not its id, so usage by proxy key follows the id.
-- The migration runs in one transaction, so a failure leaves nothing half done.
ALTER TABLE request_logs ADD COLUMN proxy_key_id BIGINT NOT NULL DEFAULT 0;
--bun:split
ALTER TABLE usage_hourly ADD COLUMN proxy_key_id BIGINT NOT NULL DEFAULT 0;
