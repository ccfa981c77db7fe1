-- Success and failure counts per group and hour (API.md 9.3), upserted on (time, group_id).
CREATE TABLE IF NOT EXISTS group_hourly_stats (
    id            INTEGER   PRIMARY KEY AUTOINCREMENT,
    "time"        TIMESTAMP NOT NULL,
    group_id      BIGINT    NOT NULL,
    success_count BIGINT    NOT NULL DEFAULT 0,
    failure_count BIGINT    NOT NULL DEFAULT 0,
    created_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uq_group_hourly_stats_time_group UNIQUE ("time", group_id)
);
