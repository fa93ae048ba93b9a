import { CanceledError } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';

/**
 * Pulls messages one at a time from a client (or bidi) stream. Resolves undefined at the
 * client's half-close; rejects with Canceled when the call is cancelled, so a handler
 * waiting for a message never outlives its client. At most one message is buffered:
 * the stream is paused until the handler asks for the next one.
 */
export class StreamReader<T> {
  private readonly queue: T[] = [];
  private ended = false;
  private failure: Error | undefined;
  private waiter: { resolve: (v: T | undefined) => void; reject: (e: Error) => void } | undefined;

  constructor(
    private readonly call: grpc.ServerReadableStream<T, unknown> | grpc.ServerDuplexStream<T, unknown>,
    signal?: AbortSignal,
  ) {
    call.on('data', (msg: T) => {
      const w = this.waiter;
      if (w) {
        this.waiter = undefined;
        w.resolve(msg);
      } else {
        this.queue.push(msg);
        call.pause();
      }
    });
    call.once('end', () => {
      this.ended = true;
      this.wake();
    });
    call.once('error', (err: Error) => this.fail(err));
    const abort = () => this.fail(new CanceledError('context canceled'));
    if (signal?.aborted) abort();
    else signal?.addEventListener('abort', abort, { once: true });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    if (this.failure) w.reject(this.failure);
    else w.resolve(undefined);
  }

  /** The next message, or undefined once the client has finished sending. */
  next(): Promise<T | undefined> {
    if (this.queue.length > 0) {
      const msg = this.queue.shift()!;
      if (this.queue.length === 0) this.call.resume();
      return Promise.resolve(msg);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }
}
