-- Which proxy key a request came with (a fingerprint and a name, never the secret), and
-- one index per filter of GET /api/logs, each ending in "timestamp" so that the newest
-- page of any single filter is an index range scan. (key_hash, "timestamp") replaces the
-- index on key_hash alone, which it covers.
-- The migration runs in one transaction, and every statement may run again.
ALTER TABLE request_logs ADD COLUMN IF NOT EXISTS proxy_key_fp VARCHAR(16) NOT NULL DEFAULT '';
--bun:split
ALTER TABLE request_logs ADD COLUMN IF NOT EXISTS proxy_key_name VARCHAR(255) NOT NULL DEFAULT '';
--bun:split
DROP INDEX IF EXISTS idx_request_logs_key_hash;
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_parent_timestamp ON request_logs (parent_group_id, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_key_hash_timestamp ON request_logs (key_hash, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_status_timestamp ON request_logs (status_code, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_success_timestamp ON request_logs (is_success, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_type_timestamp ON request_logs (request_type, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_source_ip_timestamp ON request_logs (source_ip, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_model_timestamp ON request_logs (model, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_proxy_key_timestamp ON request_logs (proxy_key_fp, "timestamp");
