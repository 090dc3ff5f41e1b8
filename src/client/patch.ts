// A small RFC 6902 applier, so the browser bundle needs no dependency. It covers what the
// server sends (fast-json-patch's compare() plus a leading `test` of /version): test, add,
// remove, replace, with RFC 6901 JSON Pointers (`~1` is `/`, `~0` is `~`). Every patch is
// applied to a copy, all or nothing: a failing op leaves the caller's document untouched.

export type PatchOperation =
  | { op: 'test'; path: string; value: unknown }
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string }

/** A patch that cannot be applied: a failed `test`, a missing path, an unknown op. */
export class PatchError extends Error {
  constructor(
    message: string,
    readonly operation: unknown,
  ) {
    super(message)
    this.name = 'PatchError'
  }
}

/** Splits a JSON Pointer into unescaped tokens; '' is the whole document. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) throw new PatchError(`not a JSON Pointer: ${pointer}`, pointer)
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'))
}

/** Returns a patched deep copy of `doc`; throws PatchError and changes nothing on failure. */
export function applyPatch<T>(doc: T, patch: readonly PatchOperation[]): T {
  if (!Array.isArray(patch)) throw new PatchError('a patch is an array of operations', patch)
  let root: unknown = structuredClone(doc)
  for (const operation of patch) root = applyOperation(root, operation)
  return root as T
}

function applyOperation(root: unknown, operation: PatchOperation): unknown {
  if (typeof operation !== 'object' || operation === null || typeof operation.path !== 'string')
    throw new PatchError('malformed operation', operation)
  const tokens = parsePointer(operation.path)
  if (operation.op === 'test') {
    const actual = tokens.length === 0 ? root : lookup(root, tokens, operation)
    if (!deepEqual(actual, operation.value))
      throw new PatchError(
        `test failed at ${operation.path}: expected ${JSON.stringify(operation.value)}, found ${JSON.stringify(actual)}`,
        operation,
      )
    return root
  }
  if (operation.op !== 'add' && operation.op !== 'replace' && operation.op !== 'remove')
    throw new PatchError(`unsupported op ${(operation as { op: unknown }).op}`, operation)
  if (tokens.length === 0) {
    if (operation.op === 'remove') throw new PatchError('cannot remove the root', operation)
    return structuredClone(operation.value)
  }
  const parent = lookup(root, tokens.slice(0, -1), operation)
  const key = tokens[tokens.length - 1]!
  if (Array.isArray(parent)) {
    const isAppend = operation.op === 'add' && key === '-'
    const index = isAppend ? parent.length : arrayIndex(key, operation)
    const max = operation.op === 'add' ? parent.length : parent.length - 1
    if (index > max)
      throw new PatchError(`index ${key} out of range at ${operation.path}`, operation)
    if (operation.op === 'add') parent.splice(index, 0, structuredClone(operation.value))
    else if (operation.op === 'replace') parent[index] = structuredClone(operation.value)
    else parent.splice(index, 1)
    return root
  }
  if (!isObject(parent)) throw new PatchError(`no container at ${operation.path}`, operation)
  if (operation.op !== 'add' && !Object.hasOwn(parent, key))
    throw new PatchError(`nothing to ${operation.op} at ${operation.path}`, operation)
  if (operation.op === 'remove') delete parent[key]
  // An own data property even for keys like `__proto__` (JSON allows them; a plain
  // assignment would change the object's prototype instead).
  else
    Object.defineProperty(parent, key, {
      value: structuredClone(operation.value),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  return root
}

function lookup(root: unknown, tokens: string[], operation: PatchOperation): unknown {
  let node = root
  for (const token of tokens) {
    if (Array.isArray(node)) {
      const index = arrayIndex(token, operation)
      if (index >= node.length) throw new PatchError(`no element at ${operation.path}`, operation)
      node = node[index]
    } else if (isObject(node) && Object.hasOwn(node, token)) {
      node = node[token]
    } else {
      throw new PatchError(`path not found: ${operation.path}`, operation)
    }
  }
  return node
}

function arrayIndex(token: string, operation: PatchOperation): number {
  if (!/^(0|[1-9]\d*)$/.test(token))
    throw new PatchError(`bad array index ${token} at ${operation.path}`, operation)
  return Number(token)
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
