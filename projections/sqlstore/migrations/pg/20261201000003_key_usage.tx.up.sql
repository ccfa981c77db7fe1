-- Per upstream key: how many successful requests it served and when it last did
-- (API.md 9.2), shown in the keys list. Keyed like gpt-load by (group_id, key_hash).
CREATE TABLE IF NOT EXISTS key_usage (
    group_id      BIGINT       NOT NULL,
    key_hash      VARCHAR(128) NOT NULL,
    key_id        BIGINT       NOT NULL DEFAULT 0,
    request_count BIGINT       NOT NULL DEFAULT 0,
    last_used_at  TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (group_id, key_hash)
);
