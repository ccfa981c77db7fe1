-- Request logs, one row per proxy attempt (API.md 6.1), plus token usage.
-- SQLite keeps times as text; bun always writes them in UTC with one layout, so text
-- order is time order and equal instants are equal strings.
CREATE TABLE IF NOT EXISTS request_logs (
    id                VARCHAR(36)  NOT NULL PRIMARY KEY,
    "timestamp"       TIMESTAMP    NOT NULL,
    group_id          BIGINT       NOT NULL DEFAULT 0,
    group_name        VARCHAR(255) NOT NULL DEFAULT '',
    parent_group_id   BIGINT       NOT NULL DEFAULT 0,
    parent_group_name VARCHAR(255) NOT NULL DEFAULT '',
    key_value         TEXT         NOT NULL,
    key_hash          VARCHAR(128) NOT NULL DEFAULT '',
    model             TEXT         NOT NULL,
    is_success        BOOLEAN      NOT NULL DEFAULT FALSE,
    source_ip         VARCHAR(64)  NOT NULL DEFAULT '',
    status_code       INTEGER      NOT NULL DEFAULT 0,
    request_path      VARCHAR(500) NOT NULL DEFAULT '',
    duration_ms       BIGINT       NOT NULL DEFAULT 0,
    error_message     TEXT         NOT NULL,
    user_agent        TEXT         NOT NULL,
    request_type      VARCHAR(16)  NOT NULL DEFAULT '',
    upstream_addr     VARCHAR(500) NOT NULL DEFAULT '',
    is_stream         BOOLEAN      NOT NULL DEFAULT FALSE,
    request_body      TEXT         NOT NULL,
    prompt_tokens     BIGINT       NOT NULL DEFAULT 0,
    completion_tokens BIGINT       NOT NULL DEFAULT 0,
    total_tokens      BIGINT       NOT NULL DEFAULT 0
);
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_timestamp ON request_logs ("timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_group_timestamp ON request_logs (group_id, "timestamp");
--bun:split
CREATE INDEX IF NOT EXISTS idx_request_logs_key_hash ON request_logs (key_hash);
