-- Token sums per group and hour, beside the success and failure counts.
ALTER TABLE group_hourly_stats
    ADD COLUMN IF NOT EXISTS prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS completion_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS total_tokens      BIGINT NOT NULL DEFAULT 0;
