import { createHash } from 'node:crypto';
import {
  type CommitOptions,
  type Context,
  type Digest,
  FailedPreconditionError,
  fromTimestamp,
  type IngestStatus,
  InvalidArgumentError,
  UnknownError,
  type Writer,
  type WriterOptions,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { abortedError, convertError, metadataOf } from './rpc';

/** Bytes per WRITE message; containerd's server accepts messages up to 16 MiB. */
export const WRITE_CHUNK_SIZE = 1 << 20;
/** WRITE messages sent but not yet acknowledged before write() waits for the oldest. */
const MAX_IN_FLIGHT = 8;

/** A Write request: fields left out are their defaults. */
type WriteRequest = Partial<wire.content.WriteContentRequest>;
type WriteResponse = wire.content.WriteContentResponse;

interface Pending {
  promise: Promise<WriteResponse>;
  resolve(res: WriteResponse): void;
  reject(err: Error): void;
}

const EMPTY_SHA256 = `sha256:${createHash('sha256').digest('hex')}`;

/**
 * A Writer over containerd's bidirectional Content.Write stream. The stream stays open
 * for the writer's life. One write() sends its data as 1 MiB WRITE messages without
 * waiting between them (the server answers each in order) and resolves when the last is
 * acknowledged, so once it resolves the bytes are in the ingest for every observer, and
 * digest() is the server's digest of everything written. A failure the server reports
 * ends the stream; it is raised by that call and by every later call on the writer.
 */
export class RemoteWriter implements Writer {
  private readonly pending: Pending[] = [];
  private failure: Error | undefined;
  private finished = false;
  private readonly whenFinished: Promise<void>;
  private offset = 0;
  private lastDigest: Digest = EMPTY_SHA256;
  private startedAt = new Date(0);
  private updatedAt = new Date(0);

  private constructor(
    readonly ref: string,
    private readonly call: grpc.ClientDuplexStream<WriteRequest, WriteResponse>,
    ctx: Context,
    private readonly expected: Digest,
    target: string | undefined,
  ) {
    let markFinished!: () => void;
    this.whenFinished = new Promise((resolve) => {
      markFinished = resolve;
    });
    call.on('data', (res: WriteResponse) => {
      const next = this.pending.shift();
      if (next) next.resolve(res);
      else this.fail(new UnknownError(`write ${ref}: unexpected ${res.action} response from server`));
    });
    call.on('error', (err) => this.fail(convertError(err, ctx, target)));
    call.on('status', () => {
      this.finished = true;
      if (this.pending.length > 0) this.fail(new UnknownError(`write ${ref}: stream closed by server`));
      markFinished();
    });
    // 'status' may not follow a local cancel on every path; 'close' always does.
    call.on('close', () => {
      this.finished = true;
      if (this.pending.length > 0) this.fail(new UnknownError(`write ${ref}: stream closed`));
      markFinished();
    });
    const signal = ctx.signal;
    if (signal) {
      const onAbort = (): void => {
        this.fail(abortedError(signal));
        call.cancel();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      void this.whenFinished.then(() => signal.removeEventListener('abort', onAbort));
    }
  }

  /** Opens the stream and asks the server where the ingest stands (STAT), as containerd's proxy. */
  static async open(
    client: grpc.Client,
    ctx: Context,
    opts: WriterOptions,
    target?: string,
  ): Promise<RemoteWriter> {
    if (!opts || typeof opts.ref !== 'string' || opts.ref === '') {
      throw new InvalidArgumentError('ref must not be empty');
    }
    const size = opts.desc?.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new InvalidArgumentError(`invalid expected size ${size} for ref ${JSON.stringify(opts.ref)}`);
    }
    if (ctx.signal?.aborted) throw abortedError(ctx.signal);
    const write = (
      client as unknown as Record<
        string,
        (md: grpc.Metadata) => grpc.ClientDuplexStream<WriteRequest, WriteResponse>
      >
    ).Write;
    const call = write.call(client, metadataOf(ctx));
    const expected = opts.desc?.digest ?? '';
    const writer = new RemoteWriter(opts.ref, call, ctx, expected, target);
    try {
      const res = await writer.send({ action: 'STAT', ref: opts.ref, total: size, expected });
      writer.offset = res.offset;
      writer.lastDigest = res.digest || EMPTY_SHA256;
      writer.noteStatus(res);
    } catch (err) {
      await writer.close().catch(() => {});
      throw err;
    }
    return writer;
  }

  async write(data: Buffer): Promise<void> {
    this.check();
    if (!(data instanceof Uint8Array)) {
      throw new InvalidArgumentError(`write ${this.ref}: data must be a Buffer`);
    }
    let last: Promise<WriteResponse> | undefined;
    for (let pos = 0; pos < data.length; pos += WRITE_CHUNK_SIZE) {
      const chunk = Buffer.from(
        data.buffer,
        data.byteOffset + pos,
        Math.min(WRITE_CHUNK_SIZE, data.length - pos),
      );
      const sentAt = this.offset;
      const after = sentAt + chunk.length;
      const sent = this.send({ action: 'WRITE', offset: sentAt, data: chunk });
      this.offset = after;
      last = sent.then((res) => {
        if (res.offset !== after) {
          const err = new UnknownError(
            `write ${this.ref}: short write: server is at offset ${res.offset}, expected ${after}`,
          );
          this.fail(err);
          this.call.cancel();
          throw err;
        }
        this.lastDigest = res.digest;
        this.noteStatus(res);
        return res;
      });
      // The failure is latched by fail(); this copy of it must not go unhandled.
      last.catch(() => {});
      while (this.pending.length >= MAX_IN_FLIGHT && !this.failure) {
        await this.pending[0]!.promise.catch(() => {});
      }
      this.check();
    }
    if (last !== undefined) await last;
  }

  digest(): Digest {
    return this.lastDigest;
  }

  async status(): Promise<IngestStatus> {
    await this.settle();
    const res = await this.send({ action: 'STAT' });
    this.noteStatus(res);
    return {
      ref: this.ref,
      offset: res.offset,
      total: res.total,
      expected: this.expected,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
    };
  }

  async truncate(size: number): Promise<void> {
    this.check();
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new InvalidArgumentError(`truncate ${this.ref} to ${size}: size must be a non-negative integer`);
    }
    await this.settle();
    if (size === this.offset) return;
    if (size !== 0) {
      // The protocol can only restart an ingest (a WRITE at offset 0), as containerd's writers.
      throw new InvalidArgumentError(`truncate ${this.ref} to ${size}: only truncation to 0 is supported`);
    }
    const res = await this.send({ action: 'WRITE', offset: 0 });
    this.offset = res.offset;
    this.lastDigest = res.digest;
  }

  async commit(size: number, expected?: Digest, opts: CommitOptions = {}): Promise<void> {
    this.check();
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new InvalidArgumentError(`commit ${this.ref}: invalid size ${size}`);
    }
    const res = await this.send({
      action: 'COMMIT',
      total: size,
      offset: this.offset,
      expected: expected ?? '',
      labels: opts.labels ?? {},
    });
    this.lastDigest = res.digest;
    this.offset = res.offset;
    // The server ends the stream after a commit; waiting for that means the ref is free again.
    this.call.end();
    await this.whenFinished;
    if (size > 0 && res.offset !== size) {
      throw new FailedPreconditionError(
        `commit ${this.ref}: unexpected size ${res.offset}, expected ${size}`,
      );
    }
    if (expected && res.digest !== expected) {
      throw new FailedPreconditionError(
        `commit ${this.ref}: unexpected digest ${res.digest}, expected ${expected}`,
      );
    }
  }

  async close(): Promise<void> {
    if (!this.finished) this.call.end();
    // Resolves once the server has released the ref (its handler has returned).
    await this.whenFinished;
  }

  /** Waits until every message sent so far is acknowledged, then raises any failure. */
  private async settle(): Promise<void> {
    this.check();
    while (this.pending.length > 0 && !this.failure) {
      await this.pending[this.pending.length - 1]!.promise.catch(() => {});
    }
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.finished) throw new FailedPreconditionError(`writer ${this.ref} is closed`);
  }

  private send(req: WriteRequest): Promise<WriteResponse> {
    try {
      this.check();
    } catch (err) {
      return Promise.reject(err);
    }
    let entry!: Pending;
    const promise = new Promise<WriteResponse>((resolve, reject) => {
      entry = { promise: undefined as unknown as Promise<WriteResponse>, resolve, reject };
    });
    entry.promise = promise;
    this.pending.push(entry);
    this.call.write(req);
    return promise;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.splice(0)) p.reject(this.failure);
  }

  private noteStatus(res: WriteResponse): void {
    if (res.startedAt) this.startedAt = fromTimestamp(res.startedAt);
    if (res.updatedAt) this.updatedAt = fromTimestamp(res.updatedAt);
  }
}
