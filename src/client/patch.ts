// A complete RFC 6902 (JSON Patch) applier, so the browser bundle needs no dependency: all
// six ops (add, remove, replace, move, copy, test) over RFC 6901 JSON Pointers.
//   * Pointers: '' is the whole document; every other pointer starts with '/'. In a token `~1`
//     is '/' and `~0` is '~'; a '~' followed by anything else is an error.
//   * Array indices are '0' or digits without a leading zero; '-' (past the last element)
//     only where a value is added (add, and the target of move and copy).
//   * add/replace/test need a `value`, move/copy a `from`; unknown members are ignored.
//     `test` compares JSON values (key order does not matter, array order does).
//   * `move` never moves a location into one of its own children.
//   * All or nothing: a patch is checked, then applied to a copy; a failing op throws
//     PatchError and the caller's document is untouched.
//   * Keys such as `__proto__` and `constructor` are plain members (JSON allows them): only
//     own properties are read, and members are defined, never assigned.

export type PatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string }

/** A patch that cannot be applied: malformed, a failed `test`, a missing path, a bad index. */
export class PatchError extends Error {
  constructor(
    message: string,
    readonly operation: unknown,
    /** The position of the failing operation in the patch. */
    readonly index?: number,
  ) {
    super(index === undefined ? message : `operation ${index}: ${message}`)
    this.name = 'PatchError'
  }
}

type Container = unknown[] | Record<string, unknown>
type Checked = { op: string; path: string[]; from: string[]; value: unknown }

/** Splits a JSON Pointer into unescaped tokens; '' is the whole document. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/') || /~[^01]|~$/.test(pointer))
    throw new PatchError(`not a JSON Pointer: ${JSON.stringify(pointer)}`, pointer)
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'))
}

/** Returns a patched deep copy of `doc`; throws PatchError and changes nothing on failure. */
export function applyPatch<T>(doc: T, patch: readonly PatchOperation[]): T {
  if (!Array.isArray(patch)) throw new PatchError('a patch is an array of operations', patch)
  const checked = patch.map(check)
  let root: unknown = structuredClone(doc)
  checked.forEach((op, i) => {
    try {
      root = apply(root, op)
    } catch (error) {
      throw error instanceof PatchError ? new PatchError(error.message, patch[i], i) : error
    }
  })
  return root as T
}

const OPS = ['add', 'remove', 'replace', 'move', 'copy', 'test']

function check(source: unknown, index: number): Checked {
  const fail = (message: string) => new PatchError(message, source, index)
  if (!isObject(source)) throw fail('an operation is an object')
  const { op, path, from, value } = source
  if (typeof op !== 'string' || !OPS.includes(op)) throw fail(`unknown op ${JSON.stringify(op)}`)
  if (typeof path !== 'string') throw fail(`${op} needs a string "path"`)
  if ((op === 'add' || op === 'replace' || op === 'test') && value === undefined)
    throw fail(`${op} needs a "value"`)
  const hasFrom = op === 'move' || op === 'copy'
  if (hasFrom && typeof from !== 'string') throw fail(`${op} needs a string "from"`)
  try {
    return {
      op,
      path: parsePointer(path),
      from: hasFrom ? parsePointer(from as string) : [],
      value,
    }
  } catch (error) {
    throw fail((error as Error).message)
  }
}

function apply(root: unknown, { op, path, from, value }: Checked): unknown {
  switch (op) {
    case 'test':
      if (!deepEqual(get(root, path), value))
        throw new PatchError(`test failed at ${format(path)}`, value)
      return root
    case 'remove':
      if (path.length === 0) throw new PatchError('cannot remove the whole document', path)
      return remove(root, path)
    case 'add':
      return add(root, path, structuredClone(value))
    case 'replace':
      return add(path.length === 0 ? root : remove(root, path), path, structuredClone(value))
    case 'copy':
      return add(root, path, structuredClone(get(root, from)))
    default: {
      // move: a remove, then an add of the removed value.
      const moved = get(root, from)
      const isPrefix = from.every((t, i) => t === path[i])
      if (isPrefix && from.length === path.length) return root // to itself: no effect
      if (isPrefix) throw new PatchError(`cannot move ${format(from)} into its own child`, path)
      return add(remove(root, from), path, moved)
    }
  }
}

function get(root: unknown, tokens: readonly string[]): unknown {
  let node = root
  for (const token of tokens) {
    if (Array.isArray(node)) {
      const i = arrayIndex(token, tokens)
      if (i >= node.length) throw new PatchError(`no element at ${format(tokens)}`, tokens)
      node = node[i]
    } else if (isObject(node) && Object.hasOwn(node, token)) {
      node = node[token]
    } else {
      throw new PatchError(`path not found: ${format(tokens)}`, tokens)
    }
  }
  return node
}

function parentOf(root: unknown, tokens: readonly string[]): Container {
  const parent = get(root, tokens.slice(0, -1))
  if (Array.isArray(parent) || isObject(parent)) return parent
  throw new PatchError(`no object or array holds ${format(tokens)}`, tokens)
}

function add(root: unknown, tokens: readonly string[], value: unknown): unknown {
  if (tokens.length === 0) return value
  const parent = parentOf(root, tokens)
  const key = tokens[tokens.length - 1]!
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : arrayIndex(key, tokens)
    if (i > parent.length) throw new PatchError(`index out of range: ${format(tokens)}`, tokens)
    parent.splice(i, 0, value)
  } else {
    // An own data property even for `__proto__`: an assignment would set the prototype.
    Object.defineProperty(parent, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return root
}

/** Removes the member or element `tokens` (not empty) points at; it must exist. */
function remove(root: unknown, tokens: readonly string[]): unknown {
  get(root, tokens)
  const parent = parentOf(root, tokens)
  const key = tokens[tokens.length - 1]!
  if (Array.isArray(parent)) parent.splice(arrayIndex(key, tokens), 1)
  else delete parent[key]
  return root
}

function arrayIndex(token: string, tokens: readonly string[]): number {
  if (!/^(0|[1-9]\d*)$/.test(token))
    throw new PatchError(
      `not an array index: ${JSON.stringify(token)} in ${format(tokens)}`,
      tokens,
    )
  return Number(token)
}

function format(tokens: readonly string[]): string {
  return tokens.map((t) => `/${t.replaceAll('~', '~0').replaceAll('/', '~1')}`).join('')
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** JSON equality: key order does not matter, array order does. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a))
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]))
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a)
    return (
      keys.length === Object.keys(b).length &&
      keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]))
    )
  }
  return false
}
