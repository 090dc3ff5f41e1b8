-- Up Migration

-- The logical-replication event source (EVENT_SOURCE=replication, docs/production.md):
--   * a publication of job_queue that every replicating instance streams from;
--   * a one-row switch that the NOTIFY triggers read: NOTIFY is emitted only while some
--     instance still listens for it (docs/decisions.md, "Event source").
-- Append-only: never edit this file once merged; add a new migration instead.

-- Inserts, updates and deletes of job_queue (no TRUNCATE: the hub has no use for it). From
-- PostgreSQL 15 on only the columns the event pipeline reads (JOB_DOCUMENT_COLUMNS in
-- src/db/jobs.ts: the document, tenant_id and owner_id): the payload never leaves the
-- database this way. REPLICA IDENTITY stays DEFAULT (the primary key): a delete then carries
-- only the id, which is all the hub needs to end the job's watches, and an update logs no old
-- row (FULL would log the whole old row, payload included, with every update).
-- A login without CREATE on the database cannot create it: the migration goes on, because
-- only EVENT_SOURCE=replication needs it and its start-up check says what is missing.
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'CREATE PUBLICATION jobwire_job_queue FOR TABLE job_queue (
               id, tenant_id, owner_id, type, status, progress, step, eta_seconds, result,
               error, attempts, max_attempts, cancel_requested, version, created_at,
               updated_at, started_at, completed_at)
             WITH (publish = ''insert, update, delete'')';
  ELSE
    EXECUTE 'CREATE PUBLICATION jobwire_job_queue FOR TABLE job_queue
             WITH (publish = ''insert, update, delete'')';
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'jobwire: publication jobwire_job_queue not created (%); EVENT_SOURCE=replication needs it', SQLERRM;
END
$$;

-- Whether the triggers NOTIFY. On (the default) while any instance runs EVENT_SOURCE=notify:
-- such a listener turns it on each time it connects; a replicating instance turns it off
-- only when no listener (application_name jobwire-listener) is connected to this database,
-- both under this row's lock (src/db/notify-switch.ts). A plain UPDATE by an operator works
-- too. One row: `id` can only be true.
CREATE TABLE jobwire_event_source (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  notify     boolean NOT NULL DEFAULT true,
  changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO jobwire_event_source DEFAULT VALUES;
-- Every writer's trigger reads it, whatever role the writer has (jobwire_app, a worker).
GRANT SELECT ON jobwire_event_source TO PUBLIC;

-- plpgsql keeps the lookup's plan for the session. STABLE: one statement sees one answer.
CREATE FUNCTION jobwire_notify_wanted() RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN coalesce((SELECT notify FROM jobwire_event_source WHERE id), true);
END
$$;

-- The NOTIFY triggers of 1764000000000, now also asking the switch. In the trigger's WHEN,
-- not in job_queue_notify(): with NOTIFY off the trigger function does not even run, and
-- the function (its payload) stays the business of the migrations that define it.
DROP TRIGGER job_queue_notify_insert ON job_queue;
DROP TRIGGER job_queue_notify_update ON job_queue;
DROP TRIGGER job_queue_notify_delete ON job_queue;
CREATE TRIGGER job_queue_notify_insert
  AFTER INSERT ON job_queue
  FOR EACH ROW WHEN (jobwire_notify_wanted())
  EXECUTE FUNCTION job_queue_notify();
CREATE TRIGGER job_queue_notify_update
  AFTER UPDATE ON job_queue
  FOR EACH ROW WHEN (NEW.version IS DISTINCT FROM OLD.version AND jobwire_notify_wanted())
  EXECUTE FUNCTION job_queue_notify();
CREATE TRIGGER job_queue_notify_delete
  AFTER DELETE ON job_queue
  FOR EACH ROW WHEN (jobwire_notify_wanted())
  EXECUTE FUNCTION job_queue_notify();

-- Down Migration

DROP TRIGGER IF EXISTS job_queue_notify_insert ON job_queue;
DROP TRIGGER IF EXISTS job_queue_notify_update ON job_queue;
DROP TRIGGER IF EXISTS job_queue_notify_delete ON job_queue;
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
DROP FUNCTION IF EXISTS jobwire_notify_wanted();
DROP TABLE IF EXISTS jobwire_event_source;
DROP PUBLICATION IF EXISTS jobwire_job_queue;
