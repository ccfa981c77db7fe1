-- Success and failure counts per group and hour (API.md 9.3), upserted on (time, group_id).
CREATE TABLE IF NOT EXISTS group_hourly_stats (
    id            BIGINT      NOT NULL AUTO_INCREMENT,
    `time`        DATETIME(6) NOT NULL,
    group_id      BIGINT      NOT NULL,
    success_count BIGINT      NOT NULL DEFAULT 0,
    failure_count BIGINT      NOT NULL DEFAULT 0,
    created_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_group_hourly_stats_time_group (`time`, group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
