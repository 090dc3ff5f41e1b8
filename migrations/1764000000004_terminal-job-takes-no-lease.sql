-- Up Migration

-- A terminal job must not take a lease: the lease-only (bookkeeping) branch of the trigger
-- returned before the terminal check, so `UPDATE … SET locked_by = 'w'` on a completed job
-- succeeded silently. Clearing a lease stays allowed.

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

-- Down Migration

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
