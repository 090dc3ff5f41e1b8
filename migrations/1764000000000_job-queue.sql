-- Up Migration

-- jobwire's one table, its rules, its notifications and its row-level security.
-- Append-only: never edit this file once merged; add a new migration instead.

CREATE EXTENSION IF NOT EXISTS pgcrypto; -- gen_random_uuid() before PostgreSQL 13

CREATE TABLE job_queue (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL,
  owner_id         text CHECK (length(owner_id) <= 256),
  type             text NOT NULL CHECK (type ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
  status           text NOT NULL DEFAULT 'queued'
                   CONSTRAINT job_queue_status_check
                   CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
  progress         double precision NOT NULL DEFAULT 0
                   CONSTRAINT job_queue_progress_check CHECK (progress >= 0 AND progress <= 100),
  step             text CHECK (length(step) <= 1000),
  eta_seconds      integer CONSTRAINT job_queue_eta_check CHECK (eta_seconds >= 0),
  payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
  result           jsonb,
  error            jsonb CONSTRAINT job_queue_error_check
                   CHECK (error IS NULL OR (jsonb_typeof(error) = 'object' AND error ? 'message')),
  version          bigint NOT NULL DEFAULT 1,
  -- Scheduling and leases (the worker contract, see README "Workers").
  priority         integer NOT NULL DEFAULT 0,
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 1000),
  run_at           timestamptz NOT NULL DEFAULT now(),
  locked_by        text,
  locked_until     timestamptz,
  cancel_requested boolean NOT NULL DEFAULT false,
  -- Idempotent creation: one key per tenant; request_hash tells a retry from a reuse.
  idempotency_key  text CHECK (length(idempotency_key) <= 256),
  request_hash     text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  completed_at     timestamptz,
  CONSTRAINT job_queue_idempotency_key UNIQUE (tenant_id, idempotency_key)
);

-- The tenant list: keyset pagination on (created_at, id), newest first, per tenant
-- (and per owner for members).
CREATE INDEX job_queue_tenant_created_idx ON job_queue (tenant_id, created_at DESC, id DESC);
CREATE INDEX job_queue_tenant_owner_created_idx ON job_queue (tenant_id, owner_id, created_at DESC, id DESC);
-- The worker claim: queued jobs of a type that are due.
CREATE INDEX job_queue_claim_idx ON job_queue (type, priority DESC, run_at, id) WHERE status = 'queued';
-- The lease reaper: running jobs whose lease ran out.
CREATE INDEX job_queue_lease_idx ON job_queue (locked_until) WHERE status = 'running';

-- Rules the database enforces whoever writes: the API, a worker in any language, psql.
--   * version starts at 1 and goes up by exactly one per committed visible change;
--   * created_at/updated_at/started_at/completed_at are the trigger's;
--   * a terminal job (completed, failed, cancelled) is final: SQLSTATE JW001;
--   * id and tenant_id never change: SQLSTATE JW002;
--   * a change to the lease columns alone (a heartbeat) is bookkeeping: no version, no NOTIFY.
CREATE FUNCTION job_queue_before_write() RETURNS trigger
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

CREATE TRIGGER job_queue_before_write
  BEFORE INSERT OR UPDATE ON job_queue
  FOR EACH ROW EXECUTE FUNCTION job_queue_before_write();

-- One NOTIFY per committed visible change, on one channel, with a small payload: never the
-- job's payload or result (NOTIFY payloads are limited to 8000 bytes). `ts` is the writer's
-- clock in epoch milliseconds, for the commit-to-delivery latency metric. PostgreSQL delivers
-- notifications only on commit and drops them on rollback.
CREATE FUNCTION job_queue_notify() RETURNS trigger
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

CREATE TRIGGER job_queue_notify_insert
  AFTER INSERT ON job_queue
  FOR EACH ROW EXECUTE FUNCTION job_queue_notify();
CREATE TRIGGER job_queue_notify_update
  AFTER UPDATE ON job_queue
  FOR EACH ROW WHEN (NEW.version IS DISTINCT FROM OLD.version)
  EXECUTE FUNCTION job_queue_notify();
CREATE TRIGGER job_queue_notify_delete
  AFTER DELETE ON job_queue
  FOR EACH ROW EXECUTE FUNCTION job_queue_notify();

-- Row-level security. Requests run as jobwire_app: no login, no superuser, no BYPASSRLS,
-- entered with SET LOCAL ROLE inside a transaction that also sets jobwire.tenant_id,
-- jobwire.user_id and jobwire.role with set_config(…, true). FORCE makes the policies
-- bind the table owner too, so nothing reads across tenants by accident.
-- Roles are cluster-wide: create them only once (several databases may share a cluster).
DO $$
BEGIN
  CREATE ROLE jobwire_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL;
END
$$;

-- The service's login must be able to SET ROLE jobwire_app (a superuser always can).
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT jobwire_app TO %I', current_user);
  END IF;
END
$$;

ALTER TABLE job_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_queue FORCE ROW LEVEL SECURITY;

GRANT USAGE ON SCHEMA public TO jobwire_app;
GRANT SELECT ON job_queue TO jobwire_app;
GRANT INSERT (tenant_id, owner_id, type, payload, max_attempts, priority, run_at, idempotency_key, request_hash)
  ON job_queue TO jobwire_app;
GRANT UPDATE (status, cancel_requested) ON job_queue TO jobwire_app;

-- The settings are read with missing_ok and NULLIF: once a pooled connection has set a
-- setting, current_setting(name, true) returns '' (not NULL) in later transactions, and
-- ''::uuid would raise. Unset settings therefore match nothing.
CREATE POLICY job_queue_tenant_visibility ON job_queue
  AS PERMISSIVE FOR ALL TO jobwire_app
  USING (
    tenant_id = NULLIF(current_setting('jobwire.tenant_id', true), '')::uuid
    AND (
      current_setting('jobwire.role', true) = 'admin'
      OR owner_id = NULLIF(current_setting('jobwire.user_id', true), '')
    )
  )
  WITH CHECK (
    tenant_id = NULLIF(current_setting('jobwire.tenant_id', true), '')::uuid
    AND (
      current_setting('jobwire.role', true) = 'admin'
      OR owner_id = NULLIF(current_setting('jobwire.user_id', true), '')
    )
  );

-- The service's own login reads across tenants for the event pipeline (the hub's batched
-- read happens after a subscription was authorised by an RLS read as jobwire_app).
DO $$
BEGIN
  EXECUTE format(
    'CREATE POLICY job_queue_service ON job_queue AS PERMISSIVE FOR ALL TO %I USING (true) WITH CHECK (true)',
    current_user);
END
$$;

-- Reads one job on behalf of a request in a single round trip: switches to jobwire_app,
-- sets the request's tenant, user and role, and selects. plpgsql, not LANGUAGE sql: a sql
-- function may be inlined into the caller's query and then read as the caller (a superuser
-- login would bypass RLS). The settings are transaction-local.
CREATE FUNCTION jobwire_read_job(p_tenant_id uuid, p_user_id text, p_role text, p_id uuid)
RETURNS SETOF job_queue
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM set_config('role', 'jobwire_app', true),
          set_config('jobwire.tenant_id', p_tenant_id::text, true),
          set_config('jobwire.user_id', coalesce(p_user_id, ''), true),
          set_config('jobwire.role', p_role, true);
  RETURN QUERY SELECT * FROM job_queue WHERE id = p_id;
END
$$;

-- Down Migration

DROP FUNCTION IF EXISTS jobwire_read_job(uuid, text, text, uuid);
DROP TABLE IF EXISTS job_queue;
DROP FUNCTION IF EXISTS job_queue_notify();
DROP FUNCTION IF EXISTS job_queue_before_write();
