-- Up Migration

-- The tenant feed resumes a reconnecting client by replaying what changed since its last
-- event: jobs of one tenant by updated_at (see src/http/routes/multiplexed.ts).
CREATE INDEX job_queue_tenant_updated_idx ON job_queue (tenant_id, updated_at);

-- Down Migration

DROP INDEX IF EXISTS job_queue_tenant_updated_idx;
