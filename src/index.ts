// The package's entry (`import … from 'jobwire'`): run the service from code, and the worker
// runtime for user-written workers. The browser/Node client is `jobwire/client`.
export { loadConfig, type Config } from './config/index.js'
export { startService, type RunningService } from './service.js'
export * from './worker/index.js'
export type { JobDocument, JobStatus, JobError, JobList } from './protocol/job.js'
