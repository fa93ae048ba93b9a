import { FailedPreconditionError } from '@berth/api';

/**
 * The receiving half of a stream: messages pushed by the connection, taken by the
 * consumer one at a time. `undefined` from next() means the remote closed its side.
 */
export class MessageQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (v: T | undefined) => void; reject: (e: unknown) => void } | null = null;
  private ended = false;
  private error: unknown = undefined;

  get done(): boolean {
    return this.ended || this.error !== undefined;
  }

  push(item: T): void {
    if (this.done) return;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve(item);
    } else {
      this.items.push(item);
    }
  }

  end(): void {
    if (this.done) return;
    this.ended = true;
    const w = this.waiter;
    if (w !== null && this.items.length === 0) {
      this.waiter = null;
      w.resolve(undefined);
    }
  }

  /** Fails the queue: messages already queued are still delivered, then the error. */
  fail(err: unknown): void {
    if (this.done) return;
    this.error = err;
    const w = this.waiter;
    if (w !== null && this.items.length === 0) {
      this.waiter = null;
      w.reject(err);
    }
  }

  next(): Promise<T | undefined> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T);
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve(undefined);
    if (this.waiter !== null)
      return Promise.reject(new FailedPreconditionError('ttrpc: concurrent recv on one stream'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = await this.next();
      if (item === undefined) return;
      yield item;
    }
  }
}
