// The worker runtime's public surface: createWorker() over the SQL worker functions, the
// handler context, and the errors a handler throws or sees. docs/worker-contract.md describes
// the SQL underneath, for workers written in other languages.
export { createWorker, type Worker, type WorkerOptions } from './runtime.js'
export type { JobContext, JobHandler, WorkerLogger } from './job-run.js'
export { JobAbortedError, JobFailure, type AbortCause, type JobFailureOptions } from './failure.js'
export { startLeaseReaper, type LeaseReaper } from './lease-reaper.js'
export { WORKER_SQLSTATE } from './sql.js'
