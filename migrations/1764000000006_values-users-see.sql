-- Up Migration

-- What users see of a job, decided once in the trigger so every writer (the worker functions,
-- plain UPDATEs, psql, the Redis bridge) gets the same rules (docs/decisions.md, "Progress
-- precision, the time left and the error of a retried job"):
--   * progress keeps 2 decimals: a worker computing elapsed / total * 100 writes
--     27.500000000000004, which every API and stream would show as it came. A value inside
--     0..100 is rounded before the "did anything change" comparison, so a write that differs
--     beyond the 2nd decimal is bookkeeping (no version, no NOTIFY). A value outside 0..100 is
--     left alone for job_queue_progress_check to reject: 100.004 must not round into range.
--   * a terminal job (completed, failed, cancelled) has no time left: eta_seconds = 0, whatever
--     the last estimate was (it was 0 only for completed jobs).
--   * a completed job keeps no error: the error of a failed attempt is shown while the job
--     waits for its retry and during the next attempt (the document's last_error), and must
--     not outlive the success. Failed and cancelled jobs keep theirs.
-- Replaces the version of migrations/1764000000004_terminal-job-takes-no-lease.sql; everything
-- else is unchanged.

CREATE OR REPLACE FUNCTION job_queue_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- 2 decimals, half away from zero, for a value being written: a row written before this
  -- migration keeps its value until progress is written again, so a heartbeat on it stays
  -- bookkeeping. NaN and ±Infinity fail the range test and are left to the check constraint.
  IF (TG_OP = 'INSERT' OR NEW.progress IS DISTINCT FROM OLD.progress)
     AND NEW.progress >= 0 AND NEW.progress <= 100
  THEN
    NEW.progress := round(NEW.progress::numeric, 2)::double precision;
  END IF;

  IF TG_OP = 'INSERT' THEN
    NEW.version := 1;
    NEW.created_at := now();
    NEW.updated_at := now();
    NEW.started_at := CASE WHEN NEW.status <> 'queued' THEN now() END;
    NEW.completed_at := CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN now() END;
    IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
      NEW.eta_seconds := 0;
    END IF;
    IF NEW.status = 'completed' THEN
      NEW.error := NULL;
    END IF;
    RETURN NEW;
  END IF;

  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
    RAISE EXCEPTION 'job % cannot change its id or tenant_id', OLD.id
      USING ERRCODE = 'JW002';
  END IF;

  -- Only the lease columns changed (or nothing did): bookkeeping, invisible to watchers.
  -- Keep this list in step with the document (src/events/document.ts).
  IF NEW.status IS NOT DISTINCT FROM OLD.status
     AND NEW.progress IS NOT DISTINCT FROM OLD.progress
     AND NEW.step IS NOT DISTINCT FROM OLD.step
     AND NEW.eta_seconds IS NOT DISTINCT FROM OLD.eta_seconds
     AND NEW.result IS NOT DISTINCT FROM OLD.result
     AND NEW.error IS NOT DISTINCT FROM OLD.error
     AND NEW.attempts IS NOT DISTINCT FROM OLD.attempts
     AND NEW.max_attempts IS NOT DISTINCT FROM OLD.max_attempts
     AND NEW.cancel_requested IS NOT DISTINCT FROM OLD.cancel_requested
     AND NEW.type IS NOT DISTINCT FROM OLD.type
     AND NEW.owner_id IS NOT DISTINCT FROM OLD.owner_id
     AND NEW.payload IS NOT DISTINCT FROM OLD.payload
     AND NEW.priority IS NOT DISTINCT FROM OLD.priority
     AND NEW.run_at IS NOT DISTINCT FROM OLD.run_at
  THEN
    -- A finished job takes no lease either: a worker writing one holds a stale job.
    IF OLD.status IN ('completed', 'failed', 'cancelled')
       AND (NEW.locked_by IS NOT NULL OR NEW.locked_until IS NOT NULL)
       AND (NEW.locked_by IS DISTINCT FROM OLD.locked_by OR NEW.locked_until IS DISTINCT FROM OLD.locked_until)
    THEN
      RAISE EXCEPTION 'job % is % and cannot take a lease', OLD.id, OLD.status
        USING ERRCODE = 'JW001',
              HINT = 'Terminal statuses (completed, failed, cancelled) are final.';
    END IF;
    NEW.version := OLD.version;
    NEW.created_at := OLD.created_at;
    NEW.updated_at := OLD.updated_at;
    NEW.started_at := OLD.started_at;
    NEW.completed_at := OLD.completed_at;
    RETURN NEW;
  END IF;

  IF OLD.status IN ('completed', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'job % is % and cannot change any more', OLD.id, OLD.status
      USING ERRCODE = 'JW001',
            HINT = 'Terminal statuses (completed, failed, cancelled) are final.';
  END IF;

  NEW.version := OLD.version + 1;
  NEW.created_at := OLD.created_at;
  NEW.updated_at := now();
  NEW.started_at := CASE
    WHEN OLD.started_at IS NOT NULL THEN OLD.started_at
    WHEN NEW.status = 'running' THEN now()
  END;
  NEW.completed_at := CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN now() END;
  IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
    NEW.locked_by := NULL;
    NEW.locked_until := NULL;
    NEW.eta_seconds := 0;
  END IF;
  IF NEW.status = 'completed' THEN
    NEW.error := NULL;
  END IF;
  RETURN NEW;
END
$$;

-- Down Migration

-- The version of migrations/1764000000004_terminal-job-takes-no-lease.sql.
CREATE OR REPLACE FUNCTION job_queue_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.version := 1;
    NEW.created_at := now();
    NEW.updated_at := now();
    NEW.started_at := CASE WHEN NEW.status <> 'queued' THEN now() END;
    NEW.completed_at := CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN now() END;
    RETURN NEW;
  END IF;

  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
    RAISE EXCEPTION 'job % cannot change its id or tenant_id', OLD.id
      USING ERRCODE = 'JW002';
  END IF;

  -- Only the lease columns changed (or nothing did): bookkeeping, invisible to watchers.
  -- Keep this list in step with the document (src/events/document.ts).
  IF NEW.status IS NOT DISTINCT FROM OLD.status
     AND NEW.progress IS NOT DISTINCT FROM OLD.progress
     AND NEW.step IS NOT DISTINCT FROM OLD.step
     AND NEW.eta_seconds IS NOT DISTINCT FROM OLD.eta_seconds
     AND NEW.result IS NOT DISTINCT FROM OLD.result
     AND NEW.error IS NOT DISTINCT FROM OLD.error
     AND NEW.attempts IS NOT DISTINCT FROM OLD.attempts
     AND NEW.max_attempts IS NOT DISTINCT FROM OLD.max_attempts
     AND NEW.cancel_requested IS NOT DISTINCT FROM OLD.cancel_requested
     AND NEW.type IS NOT DISTINCT FROM OLD.type
     AND NEW.owner_id IS NOT DISTINCT FROM OLD.owner_id
     AND NEW.payload IS NOT DISTINCT FROM OLD.payload
     AND NEW.priority IS NOT DISTINCT FROM OLD.priority
     AND NEW.run_at IS NOT DISTINCT FROM OLD.run_at
  THEN
    -- A finished job takes no lease either: a worker writing one holds a stale job.
    IF OLD.status IN ('completed', 'failed', 'cancelled')
       AND (NEW.locked_by IS NOT NULL OR NEW.locked_until IS NOT NULL)
       AND (NEW.locked_by IS DISTINCT FROM OLD.locked_by OR NEW.locked_until IS DISTINCT FROM OLD.locked_until)
    THEN
      RAISE EXCEPTION 'job % is % and cannot take a lease', OLD.id, OLD.status
        USING ERRCODE = 'JW001',
              HINT = 'Terminal statuses (completed, failed, cancelled) are final.';
    END IF;
    NEW.version := OLD.version;
    NEW.created_at := OLD.created_at;
    NEW.updated_at := OLD.updated_at;
    NEW.started_at := OLD.started_at;
    NEW.completed_at := OLD.completed_at;
    RETURN NEW;
  END IF;

  IF OLD.status IN ('completed', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'job % is % and cannot change any more', OLD.id, OLD.status
      USING ERRCODE = 'JW001',
            HINT = 'Terminal statuses (completed, failed, cancelled) are final.';
  END IF;

  NEW.version := OLD.version + 1;
  NEW.created_at := OLD.created_at;
  NEW.updated_at := now();
  NEW.started_at := CASE
    WHEN OLD.started_at IS NOT NULL THEN OLD.started_at
    WHEN NEW.status = 'running' THEN now()
  END;
  NEW.completed_at := CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN now() END;
  IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
    NEW.locked_by := NULL;
    NEW.locked_until := NULL;
    NEW.eta_seconds := CASE WHEN NEW.status = 'completed' THEN 0 ELSE NEW.eta_seconds END;
  END IF;
  RETURN NEW;
END
$$;
