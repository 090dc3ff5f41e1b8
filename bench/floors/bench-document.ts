// The job document the floor servers send: the fields and size of jobwire's (docs/api.md), so
// the same client code parses both sides and a comparison is only about the server.
export const BENCH_DOCUMENT = {
  id: '00000000-0000-4000-8000-000000000000',
  type: 'bench',
  status: 'running',
  progress: 0,
  step: 'seeded',
  eta_seconds: null,
  result: null,
  error: null,
  last_error: null,
  attempts: 0,
  max_attempts: 3,
  cancel_requested: false,
  version: 1,
  created_at: new Date().toISOString(),
  updated_at: new Date().toISOString(),
  started_at: new Date().toISOString(),
  completed_at: null,
}
