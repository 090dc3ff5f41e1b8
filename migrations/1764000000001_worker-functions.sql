-- Up Migration

-- The SQL worker contract: a worker role and the functions a worker in any language calls to
-- claim jobs, hold a lease, report progress and finish. docs/worker-contract.md is the user
-- manual (psql examples); this header is the reference. Append-only: add a new migration to
-- change anything here.
--
-- Role: jobwire_worker (NOLOGIN, NOSUPERUSER, NOBYPASSRLS). Workers serve every tenant, so its
-- policy is USING (true); row-level security stays active for it. A worker logs in with its own
-- role: CREATE ROLE my_worker LOGIN PASSWORD '…' IN ROLE jobwire_worker.
--
-- Functions (SECURITY INVOKER: they run with the caller's rights, so jobwire_worker, the table
-- owner and a superuser may call them; EXECUTE is revoked from PUBLIC, so jobwire_app may not):
--
--   jobwire_claim(p_worker_id text, p_types text[], p_max_jobs integer DEFAULT 1,
--                 p_lease_seconds integer DEFAULT 30) RETURNS SETOF job_queue
--       Up to p_max_jobs queued, due (run_at <= now()) jobs of the given types (NULL: any
--       type) without cancel_requested, by priority DESC, run_at, id, FOR UPDATE SKIP LOCKED;
--       each becomes running with locked_by, locked_until = now() + lease, attempts + 1.
--   jobwire_heartbeat(p_job_id uuid, p_worker_id text, p_lease_seconds integer DEFAULT 30,
--                     OUT lease_held boolean, OUT cancel_requested boolean)
--       Extends the lease when p_worker_id holds the job. Never raises for a lost lease:
--       lease_held = false says stop working. Changes locked_until only: no version, no NOTIFY.
--   jobwire_progress(p_job_id uuid, p_worker_id text, p_progress double precision,
--                    p_step text DEFAULT NULL, p_eta_seconds integer DEFAULT NULL,
--                    p_lease_seconds integer DEFAULT 30,
--                    OUT lease_held boolean, OUT cancel_requested boolean)
--       Sets progress/step/eta_seconds (a NULL argument keeps the current value) and extends
--       the lease. JW003 when the caller does not hold the job.
--   jobwire_complete(p_job_id uuid, p_worker_id text, p_result jsonb DEFAULT NULL)
--       RETURNS job_queue: completed, result, progress 100.
--   jobwire_fail(p_job_id uuid, p_worker_id text, p_message text, p_code text DEFAULT NULL,
--                p_retryable boolean DEFAULT true, p_retry_delay_seconds integer DEFAULT NULL)
--       RETURNS job_queue: error = {message, code}; retryable and attempts < max_attempts →
--       queued again at run_at = now() + backoff; otherwise failed. See "Backoff" below.
--   jobwire_cancelled(p_job_id uuid, p_worker_id text) RETURNS job_queue
--       The worker stopped the job (normally because cancel_requested): cancelled.
--   jobwire_release(p_job_id uuid, p_worker_id text, p_message text DEFAULT 'worker stopped')
--       RETURNS job_queue: the worker gives the job back unfinished (graceful shutdown):
--       queued, due now, and the interrupted attempt is not counted (attempts - 1).
--   jobwire_reap_expired_leases() RETURNS integer
--       Running jobs whose locked_until < now(): queued again (due now) while attempts <
--       max_attempts, else failed; error {message: 'lease expired', code: 'lease_expired'}.
--       Also ends queued jobs with cancel_requested as cancelled. Returns the number changed.
--
-- Backoff (jobwire_fail, retryable): run_at = now() + least(2 ^ attempts, 3600) seconds, where
-- attempts already counts the failed attempt: 2 s, 4 s, 8 s, … capped at 1 hour from the 12th
-- attempt. p_retry_delay_seconds (>= 0) replaces the formula, e.g. for an upstream Retry-After.
--
-- Outcomes of a job whose cancel was requested: a retryable failure, a release or an expired
-- lease ends it cancelled instead of queueing it again (nobody wants it retried).
--
-- SQLSTATEs:
--   JW001  the job is terminal and cannot change (raised by the trigger of the first migration)
--   JW002  id or tenant_id changed (trigger of the first migration)
--   JW003  lease lost: the job is not running under p_worker_id (finished, re-queued by the
--          reaper, cancelled, or claimed by another worker). Stop working on it; write nothing.
--   JW004  no such job
--   22023  invalid_parameter_value: an empty worker id, p_max_jobs outside 1..1000, a lease
--          outside 1..86400 seconds, a negative retry delay, an empty failure message
--   23514  check_violation: progress outside 0..100 (job_queue_progress_check), negative eta
--          (job_queue_eta_check)

-- Roles are cluster-wide and several databases (tests, staging) may share a cluster: create it
-- once. Two migrations racing on CREATE ROLE see unique_violation rather than duplicate_object.
DO $$
BEGIN
  CREATE ROLE jobwire_worker NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The service's login may run the bundled worker as jobwire_worker (a superuser always can).
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT jobwire_worker TO %I', current_user);
  END IF;
END
$$;

-- Workers serve every tenant. RLS stays enabled for the role (row_security_active is true):
-- the policy is what lets it see rows, and a later migration can narrow it.
CREATE POLICY job_queue_worker ON job_queue
  AS PERMISSIVE FOR ALL TO jobwire_worker
  USING (true) WITH CHECK (true);

-- What a worker needs for the functions and for plain UPDATEs (SPEC §2: "UPDATE job_queue SET
-- progress = 40 …"), and to enqueue follow-up jobs. No DELETE, no TRUNCATE, and the columns
-- that the API owns (payload, owner_id, idempotency) are not updatable.
GRANT USAGE ON SCHEMA public TO jobwire_worker;
GRANT SELECT ON job_queue TO jobwire_worker;
GRANT INSERT (tenant_id, owner_id, type, payload, max_attempts, priority, run_at, idempotency_key)
  ON job_queue TO jobwire_worker;
GRANT UPDATE (status, progress, step, eta_seconds, result, error, attempts, run_at, locked_by,
              locked_until)
  ON job_queue TO jobwire_worker;

-- Raises JW004 when the job does not exist, else JW003 naming what the job is doing instead.
-- Called only after a guarded UPDATE matched nothing, so it costs nothing on the happy path.
CREATE FUNCTION jobwire_raise_not_held(p_job_id uuid, p_worker_id text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  j job_queue;
BEGIN
  SELECT * INTO j FROM job_queue WHERE id = p_job_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'JW004';
  END IF;
  RAISE EXCEPTION 'job % is not held by worker % (status %, locked by %)',
      p_job_id, p_worker_id, j.status, coalesce(j.locked_by, 'nobody')
    USING ERRCODE = 'JW003',
          HINT = 'The lease was lost: stop working on the job and write nothing more for it.';
END
$$;

CREATE FUNCTION jobwire_check_lease_args(p_worker_id text, p_lease_seconds integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_worker_id IS NULL OR length(p_worker_id) = 0 OR length(p_worker_id) > 256 THEN
    RAISE EXCEPTION 'worker id must be 1 to 256 characters' USING ERRCODE = '22023';
  END IF;
  -- One day: a longer lease would hide a dead worker for longer than anyone would wait.
  IF p_lease_seconds IS NULL OR p_lease_seconds NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'lease must be 1 to 86400 seconds, got %', p_lease_seconds
      USING ERRCODE = '22023';
  END IF;
END
$$;

CREATE FUNCTION jobwire_claim(
  p_worker_id text,
  p_types text[],
  p_max_jobs integer DEFAULT 1,
  p_lease_seconds integer DEFAULT 30
) RETURNS SETOF job_queue
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM jobwire_check_lease_args(p_worker_id, p_lease_seconds);
  IF p_max_jobs IS NULL OR p_max_jobs NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'max_jobs must be 1 to 1000, got %', p_max_jobs USING ERRCODE = '22023';
  END IF;
  -- SKIP LOCKED: concurrent claimers pass over each other's rows instead of queueing behind
  -- them, so each job goes to exactly one claimer. The order matches job_queue_claim_idx.
  RETURN QUERY
  WITH picked AS (
    SELECT q.id
    FROM job_queue q
    WHERE q.status = 'queued'
      AND (p_types IS NULL OR q.type = ANY (p_types))
      AND q.run_at <= now()
      AND NOT q.cancel_requested
    ORDER BY q.priority DESC, q.run_at, q.id
    LIMIT p_max_jobs
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE job_queue j
    SET status = 'running',
        locked_by = p_worker_id,
        locked_until = now() + make_interval(secs => p_lease_seconds),
        attempts = j.attempts + 1
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.*
  )
  SELECT * FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;

-- A lease held means: running under this worker id. An expired lease that the reaper has not
-- taken yet is still held and gets renewed; once the reaper re-queued the job, the guarded
-- UPDATE re-checks the row after waiting for the reaper's lock and matches nothing.
CREATE FUNCTION jobwire_heartbeat(
  p_job_id uuid,
  p_worker_id text,
  p_lease_seconds integer DEFAULT 30,
  OUT lease_held boolean,
  OUT cancel_requested boolean
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM jobwire_check_lease_args(p_worker_id, p_lease_seconds);
  -- Only locked_until changes: the trigger keeps the version and sends no NOTIFY.
  UPDATE job_queue j
  SET locked_until = now() + make_interval(secs => p_lease_seconds)
  WHERE j.id = p_job_id AND j.status = 'running' AND j.locked_by = p_worker_id
  RETURNING true, j.cancel_requested INTO lease_held, cancel_requested;
  IF NOT FOUND THEN
    lease_held := false;
    SELECT j.cancel_requested INTO cancel_requested FROM job_queue j WHERE j.id = p_job_id;
    cancel_requested := coalesce(cancel_requested, false);
  END IF;
END
$$;

CREATE FUNCTION jobwire_progress(
  p_job_id uuid,
  p_worker_id text,
  p_progress double precision,
  p_step text DEFAULT NULL,
  p_eta_seconds integer DEFAULT NULL,
  p_lease_seconds integer DEFAULT 30,
  OUT lease_held boolean,
  OUT cancel_requested boolean
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM jobwire_check_lease_args(p_worker_id, p_lease_seconds);
  -- Range checks are the table's (job_queue_progress_check, job_queue_eta_check): one rule,
  -- whoever writes. Unchanged values with a renewed lease are a heartbeat: no version bump.
  UPDATE job_queue j
  SET progress = coalesce(p_progress, j.progress),
      step = coalesce(p_step, j.step),
      eta_seconds = coalesce(p_eta_seconds, j.eta_seconds),
      locked_until = now() + make_interval(secs => p_lease_seconds)
  WHERE j.id = p_job_id AND j.status = 'running' AND j.locked_by = p_worker_id
  RETURNING true, j.cancel_requested INTO lease_held, cancel_requested;
  IF NOT FOUND THEN
    PERFORM jobwire_raise_not_held(p_job_id, p_worker_id);
  END IF;
END
$$;

CREATE FUNCTION jobwire_complete(p_job_id uuid, p_worker_id text, p_result jsonb DEFAULT NULL)
RETURNS job_queue
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  j job_queue;
BEGIN
  -- The trigger clears the lease, sets completed_at and eta_seconds = 0.
  UPDATE job_queue q
  SET status = 'completed', result = p_result, progress = 100
  WHERE q.id = p_job_id AND q.status = 'running' AND q.locked_by = p_worker_id
  RETURNING q.* INTO j;
  IF NOT FOUND THEN
    PERFORM jobwire_raise_not_held(p_job_id, p_worker_id);
  END IF;
  RETURN j;
END
$$;

CREATE FUNCTION jobwire_fail(
  p_job_id uuid,
  p_worker_id text,
  p_message text,
  p_code text DEFAULT NULL,
  p_retryable boolean DEFAULT true,
  p_retry_delay_seconds integer DEFAULT NULL
) RETURNS job_queue
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  j job_queue;
  v_error jsonb;
BEGIN
  IF p_message IS NULL OR length(p_message) = 0 THEN
    RAISE EXCEPTION 'a failure needs a message' USING ERRCODE = '22023';
  END IF;
  IF p_retry_delay_seconds < 0 THEN
    RAISE EXCEPTION 'retry delay must be >= 0 seconds, got %', p_retry_delay_seconds
      USING ERRCODE = '22023';
  END IF;
  v_error := jsonb_build_object('message', p_message, 'code', p_code);

  -- The status decision needs attempts, max_attempts and cancel_requested as of the lock, so
  -- it is made inside the UPDATE (one statement, the row locked once).
  UPDATE job_queue q
  SET status = CASE
        WHEN NOT coalesce(p_retryable, true) OR q.attempts >= q.max_attempts THEN 'failed'
        WHEN q.cancel_requested THEN 'cancelled'
        ELSE 'queued'
      END,
      error = v_error,
      run_at = CASE
        WHEN coalesce(p_retryable, true) AND q.attempts < q.max_attempts AND NOT q.cancel_requested
        THEN now() + make_interval(secs => coalesce(p_retry_delay_seconds,
                                                    least(power(2, q.attempts), 3600)))
        ELSE q.run_at
      END,
      -- A job queued for another attempt starts from zero; a final failure keeps where it
      -- stopped, which tells the user how far it got.
      progress = CASE WHEN coalesce(p_retryable, true) AND q.attempts < q.max_attempts
                        AND NOT q.cancel_requested THEN 0 ELSE q.progress END,
      step = CASE WHEN coalesce(p_retryable, true) AND q.attempts < q.max_attempts
                    AND NOT q.cancel_requested THEN NULL ELSE q.step END,
      eta_seconds = CASE WHEN coalesce(p_retryable, true) AND q.attempts < q.max_attempts
                           AND NOT q.cancel_requested THEN NULL ELSE q.eta_seconds END,
      locked_by = NULL,
      locked_until = NULL
  WHERE q.id = p_job_id AND q.status = 'running' AND q.locked_by = p_worker_id
  RETURNING q.* INTO j;
  IF NOT FOUND THEN
    PERFORM jobwire_raise_not_held(p_job_id, p_worker_id);
  END IF;
  RETURN j;
END
$$;

CREATE FUNCTION jobwire_cancelled(p_job_id uuid, p_worker_id text) RETURNS job_queue
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  j job_queue;
BEGIN
  UPDATE job_queue q
  SET status = 'cancelled'
  WHERE q.id = p_job_id AND q.status = 'running' AND q.locked_by = p_worker_id
  RETURNING q.* INTO j;
  IF NOT FOUND THEN
    PERFORM jobwire_raise_not_held(p_job_id, p_worker_id);
  END IF;
  RETURN j;
END
$$;

-- Graceful shutdown: the job is not at fault, so the interrupted attempt does not count
-- towards max_attempts, and it is due at once so another worker picks it up.
CREATE FUNCTION jobwire_release(
  p_job_id uuid,
  p_worker_id text,
  p_message text DEFAULT 'worker stopped'
) RETURNS job_queue
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  j job_queue;
BEGIN
  UPDATE job_queue q
  SET status = CASE WHEN q.cancel_requested THEN 'cancelled' ELSE 'queued' END,
      attempts = CASE WHEN q.cancel_requested THEN q.attempts ELSE greatest(q.attempts - 1, 0) END,
      error = jsonb_build_object('message', coalesce(p_message, 'worker stopped'),
                                 'code', 'worker_stopped'),
      run_at = now(),
      progress = CASE WHEN q.cancel_requested THEN q.progress ELSE 0 END,
      step = CASE WHEN q.cancel_requested THEN q.step END,
      eta_seconds = CASE WHEN q.cancel_requested THEN q.eta_seconds END,
      locked_by = NULL,
      locked_until = NULL
  WHERE q.id = p_job_id AND q.status = 'running' AND q.locked_by = p_worker_id
  RETURNING q.* INTO j;
  IF NOT FOUND THEN
    PERFORM jobwire_raise_not_held(p_job_id, p_worker_id);
  END IF;
  RETURN j;
END
$$;

-- Called every few seconds by every worker runtime (and by the service); SKIP LOCKED lets
-- concurrent reapers and live heartbeats pass each other. A re-queued job is due at once: the
-- expired lease already delayed it by at least its lease.
CREATE FUNCTION jobwire_reap_expired_leases() RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_reaped integer;
  v_cancelled integer;
BEGIN
  WITH expired AS (
    SELECT q.id FROM job_queue q
    WHERE q.status = 'running' AND q.locked_until < now()
    FOR UPDATE SKIP LOCKED
  )
  UPDATE job_queue j
  SET status = CASE
        WHEN j.cancel_requested THEN 'cancelled'
        WHEN j.attempts < j.max_attempts THEN 'queued'
        ELSE 'failed'
      END,
      error = '{"message": "lease expired", "code": "lease_expired"}'::jsonb,
      run_at = CASE WHEN j.attempts < j.max_attempts AND NOT j.cancel_requested
                    THEN now() ELSE j.run_at END,
      progress = CASE WHEN j.attempts < j.max_attempts AND NOT j.cancel_requested
                      THEN 0 ELSE j.progress END,
      step = CASE WHEN j.attempts < j.max_attempts AND NOT j.cancel_requested
                  THEN NULL ELSE j.step END,
      eta_seconds = CASE WHEN j.attempts < j.max_attempts AND NOT j.cancel_requested
                         THEN NULL ELSE j.eta_seconds END,
      locked_by = NULL,
      locked_until = NULL
  FROM expired
  WHERE j.id = expired.id;
  GET DIAGNOSTICS v_reaped = ROW_COUNT;

  -- A queued job with cancel_requested (set by a plain UPDATE, or left by a race with the
  -- API's cancel) is never claimed: end it here rather than leave it queued for ever.
  WITH doomed AS (
    SELECT q.id FROM job_queue q
    WHERE q.status = 'queued' AND q.cancel_requested
    FOR UPDATE SKIP LOCKED
  )
  UPDATE job_queue j SET status = 'cancelled'
  FROM doomed WHERE j.id = doomed.id;
  GET DIAGNOSTICS v_cancelled = ROW_COUNT;

  RETURN v_reaped + v_cancelled;
END
$$;

-- EXECUTE: functions are executable by PUBLIC by default. Only workers (and the owner and
-- superusers, who always can) should claim or finish jobs; jobwire_app must not.
REVOKE EXECUTE ON FUNCTION
  jobwire_raise_not_held(uuid, text),
  jobwire_check_lease_args(text, integer),
  jobwire_claim(text, text[], integer, integer),
  jobwire_heartbeat(uuid, text, integer),
  jobwire_progress(uuid, text, double precision, text, integer, integer),
  jobwire_complete(uuid, text, jsonb),
  jobwire_fail(uuid, text, text, text, boolean, integer),
  jobwire_cancelled(uuid, text),
  jobwire_release(uuid, text, text),
  jobwire_reap_expired_leases()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  jobwire_raise_not_held(uuid, text),
  jobwire_check_lease_args(text, integer),
  jobwire_claim(text, text[], integer, integer),
  jobwire_heartbeat(uuid, text, integer),
  jobwire_progress(uuid, text, double precision, text, integer, integer),
  jobwire_complete(uuid, text, jsonb),
  jobwire_fail(uuid, text, text, text, boolean, integer),
  jobwire_cancelled(uuid, text),
  jobwire_release(uuid, text, text),
  jobwire_reap_expired_leases()
TO jobwire_worker;

-- Down Migration

DROP FUNCTION IF EXISTS jobwire_reap_expired_leases();
DROP FUNCTION IF EXISTS jobwire_release(uuid, text, text);
DROP FUNCTION IF EXISTS jobwire_cancelled(uuid, text);
DROP FUNCTION IF EXISTS jobwire_fail(uuid, text, text, text, boolean, integer);
DROP FUNCTION IF EXISTS jobwire_complete(uuid, text, jsonb);
DROP FUNCTION IF EXISTS jobwire_progress(uuid, text, double precision, text, integer, integer);
DROP FUNCTION IF EXISTS jobwire_heartbeat(uuid, text, integer);
DROP FUNCTION IF EXISTS jobwire_claim(text, text[], integer, integer);
DROP FUNCTION IF EXISTS jobwire_check_lease_args(text, integer);
DROP FUNCTION IF EXISTS jobwire_raise_not_held(uuid, text);
DROP POLICY IF EXISTS job_queue_worker ON job_queue;
REVOKE ALL ON job_queue FROM jobwire_worker;
REVOKE USAGE ON SCHEMA public FROM jobwire_worker;
-- The role stays: it is cluster-wide and other databases of the cluster may still use it.
