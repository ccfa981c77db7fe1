-- Usage attribution (GET /api/usage): requests, failures and tokens per hour, group
-- (the serving group, and the aggregate it was reached through, 0 when none), model,
-- proxy key and upstream key. It is a rollup of request_logs kept beyond their
-- retention: log retention never deletes from it.
CREATE TABLE IF NOT EXISTS usage_hourly (
    "time"            TIMESTAMP    NOT NULL,
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
    PRIMARY KEY ("time", group_id, parent_group_id, model, proxy_key_fp, key_id)
);
--bun:split
CREATE INDEX IF NOT EXISTS idx_usage_hourly_group_time ON usage_hourly (group_id, "time");
--bun:split
CREATE INDEX IF NOT EXISTS idx_usage_hourly_parent_time ON usage_hourly (parent_group_id, "time");
--bun:split
CREATE INDEX IF NOT EXISTS idx_usage_hourly_proxy_key_time ON usage_hourly (proxy_key_fp, "time");
