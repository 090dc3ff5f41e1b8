// Hands documents to the user: callbacks, and async iterators that conflate. An iterator
// that is slower than the stream gets the newest document of each job when it asks again,
// never a backlog; the final document of a job is never skipped. Iteration ends when the
// channel finishes, or throws the error it finished with.

type Waiter<T> = { resolve(result: IteratorResult<T>): void; reject(error: unknown): void }

export class DocChannel<T> {
  private readonly listeners = new Set<(value: T) => void>()
  private readonly consumers = new Set<Consumer<T>>()
  private isFinished = false
  private error: unknown

  constructor(
    /** Values with the same key replace each other while they wait for a consumer. */
    private readonly keyOf: (value: T) => string,
    /** Called when a consumer stops early (break in for await). */
    private readonly onReturn: () => void,
  ) {}

  get finished(): boolean {
    return this.isFinished
  }

  /** `current` values are handed to the new listener at once. */
  listen(listener: (value: T) => void, current: Iterable<T> = []): () => void {
    this.listeners.add(listener)
    for (const value of current) listener(value)
    return () => this.listeners.delete(listener)
  }

  push(value: T): void {
    if (this.isFinished) return
    for (const consumer of this.consumers) consumer.offer(this.keyOf(value), value)
    for (const listener of this.listeners) {
      try {
        listener(value)
      } catch (error) {
        // A failing callback must not stop the stream; report it the way the platform does.
        setTimeout(() => {
          throw error
        }, 0)
      }
    }
  }

  finish(error?: unknown): void {
    if (this.isFinished) return
    this.isFinished = true
    this.error = error
    for (const consumer of this.consumers) consumer.finish(error)
  }

  iterator(current: Iterable<T> = []): AsyncIterableIterator<T> {
    const consumer = new Consumer<T>()
    for (const value of current) consumer.offer(this.keyOf(value), value)
    if (this.isFinished) consumer.finish(this.error)
    else this.consumers.add(consumer)
    const done = () => {
      this.consumers.delete(consumer)
      consumer.finish(undefined)
    }
    return {
      next: () => consumer.next(),
      return: () => {
        done()
        this.onReturn()
        return Promise.resolve({ value: undefined, done: true })
      },
      [Symbol.asyncIterator]() {
        return this
      },
    }
  }
}

class Consumer<T> {
  private readonly pending = new Map<string, T>()
  private waiter: Waiter<T> | undefined
  private isFinished = false
  private error: unknown

  offer(key: string, value: T): void {
    if (this.waiter) {
      const waiter = this.waiter
      this.waiter = undefined
      return waiter.resolve({ value, done: false })
    }
    // Re-inserting moves the key to the end: the oldest pending change is delivered first.
    this.pending.delete(key)
    this.pending.set(key, value)
  }

  finish(error: unknown): void {
    if (this.isFinished) return
    this.isFinished = true
    this.error = error
    const waiter = this.waiter
    this.waiter = undefined
    if (waiter) this.settleEnd(waiter)
  }

  next(): Promise<IteratorResult<T>> {
    const first = this.pending.entries().next()
    if (!first.done) {
      this.pending.delete(first.value[0])
      return Promise.resolve({ value: first.value[1], done: false })
    }
    return new Promise((resolve, reject) => {
      if (this.isFinished) this.settleEnd({ resolve, reject })
      else this.waiter = { resolve, reject }
    })
  }

  private settleEnd(waiter: Waiter<T>): void {
    if (this.error !== undefined) {
      const error = this.error
      this.error = undefined // thrown once; later next() calls just end
      waiter.reject(error)
    } else {
      waiter.resolve({ value: undefined, done: true })
    }
  }
}
