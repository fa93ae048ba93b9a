import { AlreadyExistsError, type AnyMessage, CanceledError, type Context, NotFoundError } from '@berth/api';

/**
 * One side of a stream the Streaming service carries: Anys in both directions between a
 * client and a service of the daemon (the Transfer service's progress, credentials and
 * archive data), as containerd's streaming.Stream.
 */
export interface Stream {
  /** Sends one message; rejects when the stream is gone. */
  send(msg: AnyMessage): Promise<void>;
  /** The next message from the other side, undefined once it has closed its sending side. */
  recv(): Promise<AnyMessage | undefined>;
  /** Ends the stream (the RPC carrying it returns). Idempotent. */
  close(): void;
}

/** Streams by namespace and id, registered while their RPC lasts (containerd's StreamManager). */
export class StreamManager {
  private readonly streams = new Map<string, Stream>();

  private static key(ctx: Context, id: string): string {
    return `${ctx.namespace ?? ''}\u0000${id}`;
  }

  /** Registers a stream; AlreadyExists when the id is taken in this namespace. Returns its unregister. */
  register(ctx: Context, id: string, stream: Stream): () => void {
    const key = StreamManager.key(ctx, id);
    if (this.streams.has(key)) throw new AlreadyExistsError(`stream ${id}: already exists`);
    this.streams.set(key, stream);
    return () => {
      if (this.streams.get(key) === stream) this.streams.delete(key);
    };
  }

  /** The stream registered under id in ctx's namespace; NotFound otherwise. */
  get(ctx: Context, id: string): Stream {
    const s = this.streams.get(StreamManager.key(ctx, id));
    if (!s) throw new NotFoundError(`stream ${id}: not found`);
    return s;
  }

  get size(): number {
    return this.streams.size;
  }
}

/**
 * A queue-backed Stream over any message source: `push` what arrives, `end` when the
 * sender closes, `fail` on error. The source is paused while more than `highWater`
 * messages wait, so a fast sender cannot fill memory.
 */
export class QueuedStream implements Stream {
  private readonly queue: AnyMessage[] = [];
  private waiter: { resolve: (m: AnyMessage | undefined) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private error: unknown;
  private closedFlag = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly sender: (msg: AnyMessage) => Promise<void>,
    private readonly flow: { pause(): void; resume(): void } = { pause() {}, resume() {} },
    private readonly highWater = 64,
  ) {
    this.closedPromise = new Promise((r) => {
      this.resolveClosed = r;
    });
  }

  /** Resolves when close() is called (by the service using the stream). */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  push(msg: AnyMessage): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(msg);
      return;
    }
    this.queue.push(msg);
    if (this.queue.length >= this.highWater) this.flow.pause();
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(undefined);
    }
  }

  fail(err: unknown): void {
    this.error = err ?? new CanceledError('stream canceled');
    this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(this.error);
    }
  }

  recv(): Promise<AnyMessage | undefined> {
    const next = this.queue.shift();
    if (next) {
      if (this.queue.length < this.highWater / 2) this.flow.resume();
      return Promise.resolve(next);
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended || this.closedFlag) return Promise.resolve(undefined);
    if (this.waiter) return Promise.reject(new Error('concurrent recv on one stream'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  send(msg: AnyMessage): Promise<void> {
    if (this.closedFlag) return Promise.reject(new CanceledError('stream closed'));
    if (this.error) return Promise.reject(this.error);
    return this.sender(msg);
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.end();
    this.resolveClosed();
  }
}
