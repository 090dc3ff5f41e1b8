// The live page: create demo jobs and watch them move through the client library. The page
// watches the tenant feed (watchFeed → one `GET /v1/events` connection for every job it may
// see), so creating a job opens no new connection. While the connection waits to reconnect,
// the label counts down and "Retry now" skips the wait.
// Built by esbuild into app.js (see src/dev/live-page.ts); no framework, no inline script.
import {
  describeState,
  isTerminalStatus,
  statusLabel,
  watchFeed,
  type ConnectionState,
  type JobDocument,
  type JobFeed,
} from '../../client/index.js'

const TOKEN_KEY = 'jobwire.live-page.token'
const RECENT_JOBS = 12
/** Cards beyond this are dropped, oldest finished first (the feed brings every job). */
const MAX_CARDS = 24
const COUNTDOWN_TICK_MS = 250

const el = <T extends HTMLElement>(selector: string, root: ParentNode = document): T => {
  const found = root.querySelector<T>(selector)
  if (!found) throw new Error(`live page: missing ${selector}`)
  return found
}

const ui = {
  state: el('#connection-state'),
  retryNow: el<HTMLButtonElement>('#retry-now'),
  connectionAnnouncer: el('#connection-announcer'),
  tokenForm: el<HTMLFormElement>('#token-form'),
  tokenInput: el<HTMLInputElement>('#token-input'),
  tokenStatus: el('#token-status'),
  devToken: el<HTMLButtonElement>('#dev-token'),
  createForm: el<HTMLFormElement>('#create-form'),
  seconds: el<HTMLInputElement>('#seconds-input'),
  formError: el('#form-error'),
  jobs: el<HTMLUListElement>('#jobs'),
  empty: el('#jobs-empty'),
  announcer: el('#announcer'),
  template: el<HTMLTemplateElement>('#job-template'),
}

let token = sessionStorage.getItem(TOKEN_KEY) ?? ''
let feed: JobFeed | undefined
/** The status each card last showed, to announce changes (not first renders). */
const shown = new Map<string, JobDocument['status']>()

function api(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  headers.set('authorization', `Bearer ${token}`)
  return fetch(path, { ...init, headers })
}

async function problemText(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { detail?: string; title?: string }
    return body.detail ?? body.title ?? `HTTP ${res.status}`
  } catch {
    return `HTTP ${res.status}`
  }
}

// --- connection ---------------------------------------------------------------------------

let countdown: ReturnType<typeof setInterval> | undefined

function showState(state: ConnectionState): void {
  const name = typeof state === 'string' ? state : state.state
  clearInterval(countdown)
  countdown = undefined
  if (ui.state.dataset.state !== name) {
    // Announced once per change; the countdown itself is not (it would speak every second).
    ui.connectionAnnouncer.textContent = `Connection ${name}`
  }
  ui.state.dataset.state = name
  ui.retryNow.hidden = name !== 'reconnecting' && name !== 'polling'
  if (typeof state === 'object') {
    ui.state.dataset.retryAt = String(state.retryAt)
    const tick = () => (ui.state.textContent = describeState(state))
    tick()
    countdown = setInterval(tick, COUNTDOWN_TICK_MS)
  } else {
    delete ui.state.dataset.retryAt
    ui.state.textContent = name === 'closed' ? (token ? 'closed' : 'not connected') : state
  }
}

async function useToken(next: string, how: string): Promise<void> {
  token = next.trim()
  sessionStorage.setItem(TOKEN_KEY, token)
  feed?.close()
  feed = undefined
  ui.jobs.replaceChildren()
  shown.clear()
  updateEmpty()
  if (!token) return showState('closed')
  const res = await api(`/v1/jobs?limit=${RECENT_JOBS}`)
  if (!res.ok) {
    ui.tokenStatus.textContent = `That token was refused: ${await problemText(res)}`
    token = ''
    sessionStorage.removeItem(TOKEN_KEY)
    return showState('closed')
  }
  ui.tokenStatus.textContent = `Using ${how}.`
  renderList(res)
  // List again once the feed is open: a change made between the first list and the feed's
  // start would otherwise wait for the job's next change.
  let hasListedSinceOpen = false
  const current = watchFeed({
    token,
    onState: (state) => {
      if (feed !== current) return
      showState(state)
      if (state === 'open' && !hasListedSinceOpen) {
        hasListedSinceOpen = true
        void listRecent()
      }
    },
  })
  feed = current
  current.onChange(render)
  current.onReset(() => void listRecent())
  current.onDeleted((jobId) => removeCard(jobId))
  current.onError((error) => {
    ui.formError.textContent = `The job feed stopped: ${error.message}`
  })
  showState(current.state)
}

async function listRecent(): Promise<void> {
  const res = await api(`/v1/jobs?limit=${RECENT_JOBS}`).catch(() => undefined)
  if (res?.ok) renderList(res)
}

function renderList(res: Response): void {
  void (res.json() as Promise<{ data: JobDocument[] }>).then(({ data }) => {
    for (const doc of data.reverse()) render(doc)
  })
}

ui.retryNow.addEventListener('click', () => feed?.retryNow())

// --- creating and cancelling jobs -----------------------------------------------------------

async function createJob(type: string): Promise<void> {
  ui.formError.textContent = ''
  if (!token || !feed) {
    ui.formError.textContent = 'Set a token first.'
    return
  }
  const seconds = Number(ui.seconds.value)
  const res = await api('/v1/jobs', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type, payload: Number.isFinite(seconds) ? { seconds } : {} }),
  })
  if (!res.ok) {
    ui.formError.textContent = `Could not create the job: ${await problemText(res)}`
    return
  }
  // The feed brings the new job too; rendering the answer shows it without waiting.
  render((await res.json()) as JobDocument)
}

async function cancelJob(id: string): Promise<void> {
  const res = await api(`/v1/jobs/${id}/cancel`, { method: 'POST' })
  if (!res.ok) ui.formError.textContent = `Could not cancel: ${await problemText(res)}`
}

// --- rendering -------------------------------------------------------------------------------

function formatEta(doc: JobDocument): string {
  if (isTerminalStatus(doc.status) || doc.eta_seconds === null) return '—'
  const s = doc.eta_seconds
  return s < 60 ? `about ${s} s` : `about ${Math.floor(s / 60)} min ${s % 60} s`
}

function cardFor(doc: JobDocument): HTMLLIElement {
  const existing = ui.jobs.querySelector<HTMLLIElement>(`li[data-job-id="${doc.id}"]`)
  if (existing) return existing
  const card = (ui.template.content.firstElementChild as HTMLLIElement).cloneNode(
    true,
  ) as HTMLLIElement
  card.dataset.jobId = doc.id
  const short = doc.id.slice(0, 8)
  el('.job-type', card).textContent = doc.type
  el('.job-id', card).textContent = short
  el('.progress', card).setAttribute('aria-label', `Progress of ${doc.type} job ${short}`)
  el('.job-cancel', card).addEventListener('click', () => void cancelJob(doc.id))
  el('.job-cancel', card).setAttribute('aria-label', `Cancel ${doc.type} job ${short}`)
  ui.jobs.prepend(card)
  dropOldCards()
  updateEmpty()
  return card
}

function dropOldCards(): void {
  const cards = [...ui.jobs.querySelectorAll<HTMLLIElement>('li.job')]
  for (let i = cards.length - 1; i >= 0 && cards.length > MAX_CARDS; i--) {
    const card = cards[i]!
    if (!isTerminalStatus(card.dataset.status as JobDocument['status'])) continue
    removeCard(card.dataset.jobId!)
    cards.splice(i, 1)
  }
}

function removeCard(jobId: string): void {
  ui.jobs.querySelector(`li[data-job-id="${jobId}"]`)?.remove()
  shown.delete(jobId)
  updateEmpty()
}

function render(doc: JobDocument): void {
  const card = cardFor(doc)
  const version = Number(card.dataset.version ?? 0)
  if (doc.version < version) return
  card.dataset.version = String(doc.version)
  card.dataset.status = doc.status
  const label = statusLabel(doc)
  const badge = el('.badge', card)
  badge.dataset.status = doc.status
  badge.textContent = label

  const percent = Math.round(doc.progress)
  const bar = el('.progress', card)
  bar.setAttribute('aria-valuenow', String(percent))
  bar.setAttribute('aria-valuetext', `${percent} %${doc.step ? `, ${doc.step}` : ''}`)
  el('.progress-fill', card).style.width = `${doc.progress}%`
  el('.job-progress', card).textContent = `${percent} %`
  el('.job-step', card).textContent = doc.step ?? '—'
  el('.job-eta', card).textContent = formatEta(doc)
  el('.job-version', card).textContent = String(doc.version)

  const outcome = el('.job-outcome', card)
  const terminal = isTerminalStatus(doc.status)
  outcome.hidden = !terminal
  if (terminal) {
    el('.outcome-label', card).textContent =
      doc.status === 'completed' ? 'Result' : doc.status === 'failed' ? 'Error' : 'Cancelled'
    el('.job-result', card).textContent =
      doc.status === 'completed'
        ? JSON.stringify(doc.result, null, 2)
        : doc.error
          ? `${doc.error.message}${doc.error.code ? ` (${doc.error.code})` : ''}`
          : 'The job was cancelled.'
  }
  el('.job-actions', card).hidden = terminal

  const before = shown.get(doc.id)
  shown.set(doc.id, doc.status)
  if (before !== undefined && before !== doc.status) {
    ui.announcer.textContent = `${doc.type} job ${doc.id.slice(0, 8)}: ${label}${
      doc.status === 'failed' && doc.error ? `, ${doc.error.message}` : ''
    }`
  }
}

function updateEmpty(): void {
  ui.empty.hidden = ui.jobs.childElementCount > 0
}

// --- wiring ----------------------------------------------------------------------------------

ui.tokenForm.addEventListener('submit', (event) => {
  event.preventDefault()
  void useToken(ui.tokenInput.value, 'the pasted token')
})

ui.createForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const submitter = (event as SubmitEvent).submitter as HTMLButtonElement | null
  void createJob(submitter?.value ?? 'demo')
})

async function offerDevToken(): Promise<void> {
  const res = await fetch('dev/token', { cache: 'no-store' }).catch(() => undefined)
  if (!res?.ok) return
  const { token: devToken } = (await res.json()) as { token: string }
  ui.devToken.hidden = false
  ui.devToken.addEventListener('click', () => void useToken(devToken, 'the dev token'))
  if (!token) await useToken(devToken, 'the dev token')
}

showState('closed')
updateEmpty()
if (token) void useToken(token, 'the saved token')
void offerDevToken()
