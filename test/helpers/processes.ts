// Process trees, read from /proc (Linux): which processes a spawned command started, and
// whether they are gone. A test signals only the pid it spawned, and checks the rest.
import { readdirSync, readFileSync } from 'node:fs'

function readStat(pid: number): { ppid: number; state: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state: fields[0]!, ppid: Number(fields[1]) }
  } catch {
    return undefined
  }
}

function childrenByParent(): Map<number, number[]> {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (!stat) continue
    const list = children.get(stat.ppid) ?? []
    list.push(Number(entry))
    children.set(stat.ppid, list)
  }
  return children
}

/** The processes whose parent is `pid`. */
export function children(pid: number): number[] {
  return childrenByParent().get(pid) ?? []
}

/** Every live process below `pid` (children, grandchildren, …). */
export function descendants(pid: number): number[] {
  const children = childrenByParent()
  const found: number[] = []
  const queue = [pid]
  while (queue.length) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child)
      queue.push(child)
    }
  }
  return found
}

/** True while the process exists and is not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid)
  return stat !== undefined && stat.state !== 'Z'
}

/** The command line of a process, for failure messages. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {
    return '(gone)'
  }
}
