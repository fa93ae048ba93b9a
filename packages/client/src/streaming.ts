import { randomBytes } from 'node:crypto';
import { type AnyMessage, CanceledError, type Context, encodeAny } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { abortedError, convertError, metadataOf } from './rpc';

export const STREAMING_SERVICE = 'containerd.services.streaming.v1.Streaming';

/** A stream id as containerd's GenerateID: `<prefix>-<nanos>-<random>`. */
export function streamId(prefix: string): string {
  return `${prefix}-${process.hrtime.bigint() % 1_000_000_000n}-${randomBytes(3).toString('base64url')}`;
}

const toAny = (m: { typeUrl?: string; value?: Uint8Array }): AnyMessage => ({
  typeUrl: m.typeUrl ?? '',
  value: Buffer.from(m.value ?? []),
});

/**
 * The client's end of a stream of the Streaming service (containerd 2's streaming proxy):
 * opened with a StreamInit naming it, usable once the daemon acknowledged it; a service
 * (Transfer) then finds it by id.
 */
export class ClientStream {
  private readonly queue: AnyMessage[] = [];
  private waiter: { resolve: (m: AnyMessage | undefined) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private error: unknown;

  private constructor(
    readonly id: string,
    private readonly call: grpc.ClientDuplexStream<AnyMessage, AnyMessage>,
    private readonly ctx: Context,
    private readonly target?: string,
  ) {
    call.on('data', (m: AnyMessage) => this.deliver(toAny(m)));
    call.on('end', () => this.finish());
    call.on('error', (e) => this.finish(e));
  }

  /** Opens the stream `id` and waits for the daemon to register it. */
  static async open(stub: grpc.Client, ctx: Context, id: string, target?: string): Promise<ClientStream> {
    if (ctx.signal?.aborted) throw abortedError(ctx.signal);
    const fn = (
      stub as unknown as Record<
        string,
        (md: grpc.Metadata) => grpc.ClientDuplexStream<AnyMessage, AnyMessage>
      >
    ).Stream!;
    const call = fn.call(stub, metadataOf(ctx));
    const s = new ClientStream(id, call, ctx, target);
    const onAbort = () => call.cancel();
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    call.on('close', () => ctx.signal?.removeEventListener('abort', onAbort));
    call.write(encodeAny('containerd.services.streaming.v1.StreamInit', { id }));
    const ack = await s.recv();
    if (!ack) throw new CanceledError(`stream ${id}: closed by the daemon before it was acknowledged`);
    return s;
  }

  private deliver(m: AnyMessage): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(m);
    } else {
      this.queue.push(m);
      if (this.queue.length > 64) this.call.pause();
    }
  }

  private finish(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    if (err) this.error = convertError(err, this.ctx, this.target);
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      if (this.error && this.queue.length === 0) w.reject(this.error);
      else w.resolve(this.queue.shift());
    }
  }

  /** The next message, undefined once the daemon ended the stream. */
  recv(): Promise<AnyMessage | undefined> {
    const m = this.queue.shift();
    if (m) {
      if (this.queue.length < 32) this.call.resume();
      return Promise.resolve(m);
    }
    if (this.ended) return this.error ? Promise.reject(this.error) : Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Sends one message, waiting when the channel pushes back. */
  send(msg: AnyMessage): Promise<void> {
    if (this.ended) return Promise.reject(this.error ?? new CanceledError(`stream ${this.id}: closed`));
    if (this.call.write(msg)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: unknown) => {
        this.call.off('drain', onDrain);
        this.call.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.error ?? new CanceledError(`stream ${this.id}: closed`));
      this.call.once('drain', onDrain);
      this.call.once('close', onClose);
    });
  }

  /** Ends our sending side (the daemon sees EOF); its messages can still arrive. */
  closeSend(): void {
    this.call.end();
  }

  /** Tears the stream down. */
  cancel(): void {
    if (!this.ended) this.call.cancel();
  }
}
