-- Up Migration

-- The Redis bridge's inbound direction: legacy workers publish progress / complete / failed
-- (or Celery states) on Redis without claiming the job through jobwire_claim, so they hold
-- no lease. jobwire_apply_external applies such a report to the row; the trigger then bumps
-- the version and NOTIFYs, and the change reaches every watcher as usual.
--   * a NULL argument keeps the current value;
--   * a report for a terminal job is dropped (returns the row unchanged, raises nothing):
--     late or duplicated messages after completion are normal on pub/sub;
--   * status 'running' on a queued job sets started_at through the trigger;
--   * applying the same report twice changes nothing the second time (no version, no NOTIFY).
-- Returns NULL when the job does not exist.
CREATE FUNCTION jobwire_apply_external(
  p_job_id uuid,
  p_status text DEFAULT NULL,
  p_progress double precision DEFAULT NULL,
  p_step text DEFAULT NULL,
  p_eta_seconds integer DEFAULT NULL,
  p_result jsonb DEFAULT NULL,
  p_error jsonb DEFAULT NULL
) RETURNS job_queue
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  r job_queue;
BEGIN
  SELECT * INTO r FROM job_queue WHERE id = p_job_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF r.status IN ('completed', 'failed', 'cancelled') THEN
    RETURN r;
  END IF;
  UPDATE job_queue SET
    status = coalesce(p_status, CASE WHEN p_progress IS NOT NULL AND status = 'queued' THEN 'running' ELSE status END),
    progress = CASE WHEN p_status = 'completed' THEN 100 ELSE coalesce(p_progress, progress) END,
    step = coalesce(p_step, step),
    eta_seconds = coalesce(p_eta_seconds, eta_seconds),
    result = coalesce(p_result, result),
    error = coalesce(p_error, error)
  WHERE id = p_job_id
  RETURNING * INTO r;
  RETURN r;
END
$$;

REVOKE ALL ON FUNCTION jobwire_apply_external(uuid, text, double precision, text, integer, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobwire_apply_external(uuid, text, double precision, text, integer, jsonb, jsonb) TO jobwire_worker;

-- Down Migration

DROP FUNCTION IF EXISTS jobwire_apply_external(uuid, text, double precision, text, integer, jsonb, jsonb);
