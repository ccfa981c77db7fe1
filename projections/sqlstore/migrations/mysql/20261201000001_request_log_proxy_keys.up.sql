-- Which proxy key a request came with (a fingerprint and a name, never the secret), and
-- one index per filter of GET /api/logs, each ending in `timestamp` so that the newest
-- page of any single filter is an index range scan. (key_hash, `timestamp`) replaces the
-- index on key_hash alone, which it covers.
-- One ALTER TABLE, so that MySQL applies all of it or nothing (its DDL is not
-- transactional, and MySQL, unlike MariaDB, has no ADD COLUMN IF NOT EXISTS). model is
-- TEXT, so its index covers a prefix.
ALTER TABLE request_logs
    ADD COLUMN proxy_key_fp   VARCHAR(16)  NOT NULL DEFAULT '',
    ADD COLUMN proxy_key_name VARCHAR(255) NOT NULL DEFAULT '',
    DROP INDEX idx_request_logs_key_hash,
    ADD INDEX idx_request_logs_parent_timestamp (parent_group_id, `timestamp`),
    ADD INDEX idx_request_logs_key_hash_timestamp (key_hash, `timestamp`),
    ADD INDEX idx_request_logs_status_timestamp (status_code, `timestamp`),
    ADD INDEX idx_request_logs_success_timestamp (is_success, `timestamp`),
    ADD INDEX idx_request_logs_type_timestamp (request_type, `timestamp`),
    ADD INDEX idx_request_logs_source_ip_timestamp (source_ip, `timestamp`),
    ADD INDEX idx_request_logs_model_timestamp (model(191), `timestamp`),
    ADD INDEX idx_request_logs_proxy_key_timestamp (proxy_key_fp, `timestamp`);
