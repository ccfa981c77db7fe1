-- Token sums per group and hour, beside the success and failure counts.
-- One ALTER TABLE: MySQL applies all of it or nothing.
ALTER TABLE group_hourly_stats
    ADD COLUMN prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN completion_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN total_tokens      BIGINT NOT NULL DEFAULT 0;
