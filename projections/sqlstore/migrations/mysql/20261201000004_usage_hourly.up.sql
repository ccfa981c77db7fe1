-- Usage attribution (GET /api/usage): requests, failures and tokens per hour, group
-- (the serving group, and the aggregate it was reached through, 0 when none), model,
-- proxy key and upstream key. It is a rollup of request_logs kept beyond their
-- retention: log retention never deletes from it.
CREATE TABLE IF NOT EXISTS usage_hourly (
    `time`            DATETIME(6)  NOT NULL,
    group_id          BIGINT       NOT NULL,
    parent_group_id   BIGINT       NOT NULL DEFAULT 0,
    model             VARCHAR(255) NOT NULL DEFAULT '',
    proxy_key_fp      VARCHAR(16)  NOT NULL DEFAULT '',
    key_id            BIGINT       NOT NULL DEFAULT 0,
    proxy_key_name    VARCHAR(255) NOT NULL DEFAULT '',
    requests          BIGINT       NOT NULL DEFAULT 0,
    failures          BIGINT       NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT       NOT NULL DEFAULT 0,
    completion_tokens BIGINT       NOT NULL DEFAULT 0,
    total_tokens      BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (`time`, group_id, parent_group_id, model, proxy_key_fp, key_id),
    INDEX idx_usage_hourly_group_time (group_id, `time`),
    INDEX idx_usage_hourly_parent_time (parent_group_id, `time`),
    INDEX idx_usage_hourly_proxy_key_time (proxy_key_fp, `time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
