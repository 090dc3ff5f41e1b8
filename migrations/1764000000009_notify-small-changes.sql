-- Up Migration

-- The NOTIFY payload also carries the small fields of a change, so that the hub can build the
-- new document from the one it has, without reading the row back (docs/decisions.md, "Changes
-- built from the notification"). The payload keeps {id, tenant_id, owner_id, version, status,
-- ts} and gains `d`, only when the change can be rebuilt from it:
--   * an UPDATE that leaves result, error and type as they were and does not make the job
--     completed or failed (those show result or error, which NOTIFY never carries);
--   * an INSERT without a result or an error (then `d` also has type and created_at).
-- `d` holds status-independent document fields: progress, step, eta_seconds, attempts,
-- max_attempts, cancel_requested and the timestamps as ISO 8601 UTC with milliseconds, the
-- way the service's reads render them (truncated, as node-postgres parses them). Never the
-- payload, the result or the error. A step longer than 2,000 bytes leaves `d` out, so the
-- payload stays far below NOTIFY's 8,000-byte limit whatever the step holds.
-- Anything else (a completion, a failure, a result or error written while running, a
-- deletion) notifies as before, and the hub reads the row.
CREATE OR REPLACE FUNCTION job_queue_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r job_queue := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  small json;
BEGIN
  IF TG_OP <> 'DELETE'
     AND octet_length(coalesce(NEW.step, '')) <= 2000
     AND (CASE TG_OP
            WHEN 'INSERT' THEN NEW.result IS NULL AND NEW.error IS NULL
            ELSE NEW.result IS NOT DISTINCT FROM OLD.result
                 AND NEW.error IS NOT DISTINCT FROM OLD.error
                 AND NEW.type IS NOT DISTINCT FROM OLD.type
                 AND NEW.status NOT IN ('completed', 'failed')
          END)
  THEN
    small := json_build_object(
      'type', CASE WHEN TG_OP = 'INSERT' THEN NEW.type END,
      'progress', NEW.progress,
      'step', NEW.step,
      'eta_seconds', NEW.eta_seconds,
      'attempts', NEW.attempts,
      'max_attempts', NEW.max_attempts,
      'cancel_requested', NEW.cancel_requested,
      'created_at', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'updated_at', to_char(NEW.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'started_at', to_char(NEW.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'completed_at', to_char(NEW.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    );
  END IF;
  PERFORM pg_notify('jobwire', json_build_object(
    'id', r.id,
    'tenant_id', r.tenant_id,
    'owner_id', r.owner_id,
    'version', r.version,
    'status', CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE r.status END,
    'ts', round(extract(epoch FROM clock_timestamp()) * 1000, 3),
    'd', small
  )::text);
  RETURN NULL;
END
$$;

-- Down Migration

CREATE OR REPLACE FUNCTION job_queue_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r job_queue := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
  PERFORM pg_notify('jobwire', json_build_object(
    'id', r.id,
    'tenant_id', r.tenant_id,
    'owner_id', r.owner_id,
    'version', r.version,
    'status', CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE r.status END,
    'ts', round(extract(epoch FROM clock_timestamp()) * 1000, 3)
  )::text);
  RETURN NULL;
END
$$;
