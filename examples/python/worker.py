#!/usr/bin/env python3
"""A complete jobwire worker in Python (psycopg 3), written against docs/worker-contract.md.

One job at a time: claim (jobwire_claim, with a lease), keep the lease (jobwire_heartbeat,
from a thread with its own connection, every lease / 3 seconds), report progress
(jobwire_progress, at most 4 writes a second; the last value is written before the outcome),
then complete (jobwire_complete) or fail (jobwire_fail: the database retries with backoff).
A cancel requested through the API is seen in the heartbeat and progress answers and ends the
job with jobwire_cancelled. SIGTERM or SIGINT: no more claims; the running job gets
WORKER_GRACE_SECONDS to finish, then it is given back (jobwire_release: queued again, the
attempt not counted). A job whose lease was lost is dropped without writing anything.

Environment:
  DATABASE_URL           the worker's login (docs/worker-contract.md, section 1)
  WORKER_TYPES           job types to claim, comma-separated (default: example)
  WORKER_LEASE_SECONDS   lease length (default 30; a heartbeat every third of it)
  WORKER_GRACE_SECONDS   how long a running job may finish after SIGTERM (default 10)
  WORKER_POLL_SECONDS    first idle wait after an empty claim (default 0.1), doubling up to
  WORKER_MAX_POLL_SECONDS                                                      (default 2)

Run: DATABASE_URL=postgres://my_worker:…@db/jobwire python3 examples/python/worker.py
"""

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional

import psycopg

log = logging.getLogger("jobwire-worker")

LEASE_SECONDS = int(os.environ.get("WORKER_LEASE_SECONDS", "30"))
GRACE_SECONDS = float(os.environ.get("WORKER_GRACE_SECONDS", "10"))
POLL_SECONDS = float(os.environ.get("WORKER_POLL_SECONDS", "0.1"))
MAX_POLL_SECONDS = float(os.environ.get("WORKER_MAX_POLL_SECONDS", "2"))
REAP_EVERY_SECONDS = 10.0
PROGRESS_EVERY_SECONDS = 0.25  # at most 4 progress writes a second per job
WORKER_ID = f"py:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

# SQLSTATEs of docs/worker-contract.md, section 8. psycopg 3 raises psycopg.DatabaseError for
# the JW codes (they have no class of their own): test e.sqlstate, never the message.
LEASE_LOST = {"JW003", "JW004"}


class JobFailure(Exception):
    """Raised by a handler to choose the error code and whether the job is retried."""

    def __init__(self, message: str, code: Optional[str] = None, retryable: bool = True,
                 retry_delay_seconds: Optional[int] = None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_delay_seconds = retry_delay_seconds


class Stop(Exception):
    """The job must stop: 'cancelled', 'lease lost' or 'worker stopping'."""


def connect() -> psycopg.Connection:
    # autocommit: each call is one statement, as the contract expects (and a transaction
    # pooler needs). prepare_threshold=None: psycopg would otherwise prepare a query after 5
    # executions, which PgBouncer before 1.21 in transaction mode breaks ("prepared statement
    # _pg3_0 already exists" / "does not exist").
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=None)


def connect_when_possible(stopping: threading.Event) -> psycopg.Connection:
    while True:
        try:
            return connect()
        except psycopg.OperationalError as error:
            log.warning("cannot connect, retrying in %.0f s: %s", MAX_POLL_SECONDS, error)
            if stopping.wait(MAX_POLL_SECONDS):
                raise SystemExit(0)


class Worker:
    def __init__(self, handlers: Dict[str, Callable[[dict, "JobContext"], Any]]):
        self.handlers = handlers
        self.stopping = threading.Event()
        self.stop_deadline = float("inf")  # monotonic time when a running job must give up
        self.conn = connect()
        self.current: Optional[JobContext] = None

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no more claims, %.1f s for the running job", GRACE_SECONDS)
            self.stop_deadline = time.monotonic() + GRACE_SECONDS
            self.stopping.set()
            if self.current:
                self.current.wake.set()

    def run(self) -> None:
        user = self.conn.execute("SELECT current_user").fetchone()[0]
        log.info("worker %s started as %s, types %s", WORKER_ID, user, list(self.handlers))
        idle, last_reap = 0.0, float("-inf")
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_reap >= REAP_EVERY_SECONDS:
                    last_reap = time.monotonic()
                    self.conn.execute("SELECT jobwire_reap_expired_leases()")
                job = self.conn.execute(
                    "SELECT id, type, payload, attempts, max_attempts"
                    " FROM jobwire_claim(%s, %s, 1, %s)",
                    (WORKER_ID, list(self.handlers), LEASE_SECONDS),
                ).fetchone()
            except psycopg.OperationalError as error:  # the database went away: reconnect
                log.warning("claim failed, reconnecting: %s", error)
                self.stopping.wait(MAX_POLL_SECONDS)
                self.conn.close()
                self.conn = connect_when_possible(self.stopping)
                continue
            if job is None:
                idle = POLL_SECONDS if idle == 0 else min(idle * 2, MAX_POLL_SECONDS)
                self.stopping.wait(idle)
                continue
            idle = 0.0
            keys = ("id", "type", "payload", "attempts", "max_attempts")
            self.process(dict(zip(keys, job)))
        self.conn.close()
        log.info("worker %s stopped", WORKER_ID)

    def process(self, job: dict) -> None:
        job_id = job["id"]
        ctx = JobContext(self, job)
        self.current = ctx
        heartbeat = Heartbeat(ctx)
        heartbeat.start()
        log.info("claimed %s (%s, attempt %d of %d)", job_id, job["type"], job["attempts"],
                 job["max_attempts"])
        try:
            try:
                result = self.handlers[job["type"]](job, ctx)
                ctx.flush()  # the last progress is committed before the outcome
                self.conn.execute("SELECT 1 FROM jobwire_complete(%s, %s, %s)",
                                  (job_id, WORKER_ID, json.dumps(result)))
                log.info("completed %s", job_id)
            except Stop:
                self.stopped(ctx)
            except JobFailure as failure:
                self.fail(ctx, str(failure), failure.code, failure.retryable,
                          failure.retry_delay_seconds)
            except psycopg.DatabaseError:
                raise  # a write of ours failed: handled below, not the handler's failure
            except Exception as error:  # a crashed handler: retried like any failure
                self.fail(ctx, str(error) or type(error).__name__, type(error).__name__, True,
                          None)
        except psycopg.DatabaseError as error:
            if error.sqlstate in LEASE_LOST:
                log.warning("lost %s before the final write: %s", job_id, error)
            else:
                # The lease runs out and the reaper re-queues the job: nothing is lost.
                log.error("could not record the outcome of %s: %s", job_id, error)
        finally:
            heartbeat.stop()
            self.current = None

    def fail(self, ctx: "JobContext", message: str, code: Optional[str], retryable: bool,
             retry_delay_seconds: Optional[int]) -> None:
        ctx.flush()
        row = self.conn.execute(
            "SELECT status, run_at FROM jobwire_fail(%s, %s, %s, %s, %s, %s)",
            (ctx.job["id"], WORKER_ID, message[:2000], code, retryable, retry_delay_seconds),
        ).fetchone()
        log.info("attempt failed for %s: %s (now %s, due %s)", ctx.job["id"], message, row[0],
                 row[1])

    def stopped(self, ctx: "JobContext") -> None:
        job_id = ctx.job["id"]
        if ctx.lease_lost:
            log.warning("lost the lease of %s: dropped, nothing written", job_id)
        elif ctx.cancel_requested:
            self.conn.execute("SELECT 1 FROM jobwire_cancelled(%s, %s)", (job_id, WORKER_ID))
            log.info("cancelled %s", job_id)
        else:
            self.conn.execute("SELECT 1 FROM jobwire_release(%s, %s, %s)",
                              (job_id, WORKER_ID, "worker stopped"))
            log.info("released %s: the worker is stopping", job_id)


class JobContext:
    """What a handler gets: progress(), sleep() and check(), which raise Stop when it must stop."""

    def __init__(self, worker: Worker, job: dict):
        self.worker = worker
        self.job = job
        self.wake = threading.Event()  # set when something may have changed: cancel, loss, stop
        self.cancel_requested = False
        self.lease_lost = False
        # The lease ends LEASE_SECONDS after the last renewal was sent, at the latest.
        self.lease_until = time.monotonic() + LEASE_SECONDS
        self.pending: Optional[tuple] = None
        self.last_write = float("-inf")

    def on_lease_answer(self, held: bool, cancel: bool, sent_at: float) -> None:
        if not held:
            self.lease_lost = True
        else:
            self.lease_until = sent_at + LEASE_SECONDS
            self.cancel_requested = self.cancel_requested or cancel
        if not held or cancel:
            self.wake.set()

    def check(self) -> None:
        if time.monotonic() >= self.lease_until:
            self.lease_lost = True  # no renewal in time: the reaper may hand the job on
        if self.lease_lost or self.cancel_requested:
            raise Stop()
        if self.worker.stopping.is_set() and time.monotonic() >= self.worker.stop_deadline:
            raise Stop()

    def progress(self, percent: float, step: Optional[str] = None,
                 eta_seconds: Optional[int] = None) -> None:
        """0-100; None keeps the current step / ETA. Coalesced to 4 writes a second."""
        previous = self.pending or (None, None, None)
        self.pending = (percent, step if step is not None else previous[1],
                        eta_seconds if eta_seconds is not None else previous[2])
        if time.monotonic() - self.last_write >= PROGRESS_EVERY_SECONDS:
            self.flush()
        self.check()

    def flush(self) -> None:
        if self.pending is None or self.lease_lost:
            return
        percent, step, eta = self.pending
        self.pending = None
        self.last_write = sent_at = time.monotonic()
        try:
            held, cancel = self.worker.conn.execute(
                "SELECT lease_held, cancel_requested FROM jobwire_progress(%s, %s, %s, %s, %s, %s)",
                (self.job["id"], WORKER_ID, percent, step, eta, LEASE_SECONDS),
            ).fetchone()
        except psycopg.DatabaseError as error:
            if error.sqlstate not in LEASE_LOST:
                raise
            held, cancel = False, False
        self.on_lease_answer(held, cancel, sent_at)

    def sleep(self, seconds: float) -> None:
        """Waits, and raises Stop at once when the job must stop meanwhile."""
        until = time.monotonic() + seconds
        while True:
            self.check()
            left = min(until, self.worker.stop_deadline) - time.monotonic()
            if left <= 0:
                return self.check()
            self.wake.wait(left)
            self.wake.clear()


class Heartbeat(threading.Thread):
    """Renews the lease every LEASE_SECONDS / 3 on its own connection until stopped."""

    def __init__(self, ctx: JobContext):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.done = threading.Event()

    def run(self) -> None:
        try:
            conn = connect()
        except psycopg.Error as error:  # no renewals: check() gives the job up at lease end
            log.warning("heartbeat connection failed: %s", error)
            return
        with conn:
            while not self.done.wait(LEASE_SECONDS / 3):
                sent_at = time.monotonic()
                try:
                    held, cancel = conn.execute(
                        "SELECT lease_held, cancel_requested FROM jobwire_heartbeat(%s, %s, %s)",
                        (self.ctx.job["id"], WORKER_ID, LEASE_SECONDS),
                    ).fetchone()
                except psycopg.Error as error:  # transient: the next beat tries again
                    log.warning("heartbeat failed: %s", error)
                    continue
                self.ctx.on_lease_answer(held, cancel, sent_at)
                if not held:
                    return

    def stop(self) -> None:
        self.done.set()
        self.join()


def example(job: dict, ctx: JobContext) -> Any:
    """The example job: `steps` steps of `step_seconds`; fails its first `fail_attempts`."""
    payload = job["payload"] or {}
    steps = int(payload.get("steps", 5))
    step_seconds = float(payload.get("step_seconds", 0.5))
    if job["attempts"] <= int(payload.get("fail_attempts", 0)):
        raise JobFailure(payload.get("fail_message", "simulated failure"),
                         code=payload.get("fail_code", "simulated"),
                         retryable=payload.get("retryable", True),
                         retry_delay_seconds=payload.get("retry_delay_seconds"))
    for i in range(steps):
        # i / steps * 100 is 27.500000000000004 for 11 of 40: the database keeps 2 decimals.
        ctx.progress(i / steps * 100, f"step {i + 1} of {steps}",
                     round((steps - i) * step_seconds))
        ctx.sleep(step_seconds)
    ctx.progress(100, "done", 0)
    return {"steps": steps, "attempt": job["attempts"]}


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    # One handler per job type; this example runs the same one for every type it is given.
    types = [t for t in os.environ.get("WORKER_TYPES", "example").split(",") if t]
    worker = Worker({t: example for t in types})

    def on_signal(signum: int, _frame: Any) -> None:
        # Set the events from another thread: an Event's lock is not reentrant, and the main
        # thread may hold it at the moment the signal arrives.
        threading.Thread(target=worker.request_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
