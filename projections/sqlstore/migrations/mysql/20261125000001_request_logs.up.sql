-- Request logs, one row per proxy attempt (API.md 6.1), plus token usage.
-- MySQL commits DDL implicitly, so this migration is not wrapped in a transaction; the
-- indexes are declared inside CREATE TABLE IF NOT EXISTS (MySQL has no CREATE INDEX IF
-- NOT EXISTS), which keeps a re-run harmless. DATETIME(6) keeps microseconds; bun
-- writes it in the connection's time zone (UTC unless the DSN sets loc).
-- request_body is MEDIUMTEXT: TEXT holds 65,535 bytes, too tight for a 65,000-byte body.
CREATE TABLE IF NOT EXISTS request_logs (
    id                VARCHAR(36)  NOT NULL,
    `timestamp`       DATETIME(6)  NOT NULL,
    group_id          BIGINT       NOT NULL DEFAULT 0,
    group_name        VARCHAR(255) NOT NULL DEFAULT '',
    parent_group_id   BIGINT       NOT NULL DEFAULT 0,
    parent_group_name VARCHAR(255) NOT NULL DEFAULT '',
    key_value         TEXT         NOT NULL,
    key_hash          VARCHAR(128) NOT NULL DEFAULT '',
    model             TEXT         NOT NULL,
    is_success        BOOLEAN      NOT NULL DEFAULT FALSE,
    source_ip         VARCHAR(64)  NOT NULL DEFAULT '',
    status_code       INT          NOT NULL DEFAULT 0,
    request_path      VARCHAR(500) NOT NULL DEFAULT '',
    duration_ms       BIGINT       NOT NULL DEFAULT 0,
    error_message     TEXT         NOT NULL,
    user_agent        TEXT         NOT NULL,
    request_type      VARCHAR(16)  NOT NULL DEFAULT '',
    upstream_addr     VARCHAR(500) NOT NULL DEFAULT '',
    is_stream         BOOLEAN      NOT NULL DEFAULT FALSE,
    request_body      MEDIUMTEXT   NOT NULL,
    prompt_tokens     BIGINT       NOT NULL DEFAULT 0,
    completion_tokens BIGINT       NOT NULL DEFAULT 0,
    total_tokens      BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    INDEX idx_request_logs_timestamp (`timestamp`),
    INDEX idx_request_logs_group_timestamp (group_id, `timestamp`),
    INDEX idx_request_logs_key_hash (key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
