-- Token sums per group and hour, beside the success and failure counts.
-- SQLite has no ADD COLUMN IF NOT EXISTS; the migration runs in one transaction.
ALTER TABLE group_hourly_stats ADD COLUMN prompt_tokens BIGINT NOT NULL DEFAULT 0;
--bun:split
ALTER TABLE group_hourly_stats ADD COLUMN completion_tokens BIGINT NOT NULL DEFAULT 0;
--bun:split
ALTER TABLE group_hourly_stats ADD COLUMN total_tokens BIGINT NOT NULL DEFAULT 0;
