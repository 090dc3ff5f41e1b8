// jobwire/client: watch job documents from browsers and Node 20+ (global fetch). Imports only
// ../protocol, so it bundles with no dependency. docs/client.md shows how to use it.
export type { JobDocument, JobError, JobStatus } from '../protocol/job.js'
export { isTerminalStatus, JOB_STATUSES, TERMINAL_STATUSES } from '../protocol/job.js'
export { watch, type JobWatch, type WatchOptions } from './job-watch.js'
export { createClient, watchMany, type ClientOptions, type JobwireClient } from './shared-client.js'
export { watchFeed, type FeedOptions, type JobFeed } from './feed.js'
export {
  describeState,
  WatchError,
  type ConnectionOptions,
  type ConnectionState,
  type TokenSource,
} from './options.js'
export { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js'
export { applyPatch, PatchError, type PatchOperation } from './patch.js'
export {
  statusLabel,
  toCeleryState,
  toLegacyStatus,
  type CeleryState,
  type LegacyStatus,
} from './status.js'
