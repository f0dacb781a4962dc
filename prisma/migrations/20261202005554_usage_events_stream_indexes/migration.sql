-- The console's tiers page counts continued and lost streams of the last 24 h over every org: only the rare rows
-- (continuation segments, 5xx statuses) are read, through these, however large usage_events grows.
CREATE INDEX "usage_events_continuations_idx" ON "usage_events" ("created_at") WHERE "segment" > 0;
CREATE INDEX "usage_events_failed_idx" ON "usage_events" ("created_at") WHERE "status" >= 500;
