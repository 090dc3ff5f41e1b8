-- Up Migration

-- An Idempotency-Key belongs to whoever created the job: unique per (tenant, owner, key),
-- no longer per (tenant, key). Per tenant, a member who happened to pick another member's
-- key got 422 (learning that the key exists) and an admin got the member's job back.
--
-- owner_id is NULL for jobs inserted by SQL without an owner. coalesce(owner_id, '') puts
-- those in one key space per tenant: NULLs are distinct in a unique index, so a plain
-- (tenant_id, owner_id, idempotency_key) would never make two ownerless jobs conflict. ''
-- is no user's id (the API refuses an empty `sub`), so an API key never meets an ownerless
-- job's. Partial: most jobs carry no key and stay out of the index.
-- src/db/jobs.ts insertJob names this index's columns and predicate in its ON CONFLICT.
--
-- Building the index blocks writes to job_queue while it runs (seconds per million keyed
-- jobs). Instances of the previous release target (tenant_id, idempotency_key) in their
-- ON CONFLICT and fail POSTs that carry a key once the old constraint is gone: upgrade them
-- together (docs/decisions.md, "Idempotency-Key").
CREATE UNIQUE INDEX job_queue_idempotency_key_owner_idx
  ON job_queue (tenant_id, (coalesce(owner_id, '')), idempotency_key)
  WHERE idempotency_key IS NOT NULL;

ALTER TABLE job_queue DROP CONSTRAINT job_queue_idempotency_key;

-- Down Migration

-- Back to one key per tenant. Where several owners used the same key, the oldest job keeps
-- it and the others lose theirs (a retry of those then makes a new job). Changing only the
-- key is bookkeeping to the trigger: no version, no NOTIFY, allowed on finished jobs.
UPDATE job_queue AS j
   SET idempotency_key = NULL
  FROM (
    SELECT id, row_number() OVER (PARTITION BY tenant_id, idempotency_key ORDER BY created_at, id) AS n
      FROM job_queue
     WHERE idempotency_key IS NOT NULL
  ) AS ranked
 WHERE j.id = ranked.id AND ranked.n > 1;

ALTER TABLE job_queue ADD CONSTRAINT job_queue_idempotency_key UNIQUE (tenant_id, idempotency_key);

DROP INDEX job_queue_idempotency_key_owner_idx;
