import {
  type Context,
  type Digest,
  FailedPreconditionError,
  InvalidArgumentError,
  type ReaderAt,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { serverStream } from './rpc';

/** Streams a committed blob's bytes with Content.Read (size 0 reads to the end). */
export async function* readContent(
  client: grpc.Client,
  ctx: Context,
  digest: Digest,
  offset = 0,
  size = 0,
  target?: string,
): AsyncGenerator<Buffer> {
  for await (const res of serverStream<wire.content.ReadContentResponse>(
    client,
    'Read',
    { digest, offset, size },
    ctx,
    target,
  )) {
    if (res.data.length > 0) yield res.data;
  }
}

/** A ReaderAt over Content.Read: each readAt is one Read call for exactly the bytes asked. */
export class RemoteReaderAt implements ReaderAt {
  private closed = false;

  constructor(
    private readonly client: grpc.Client,
    private readonly ctx: Context,
    private readonly digest: Digest,
    readonly size: number,
    private readonly target?: string,
  ) {}

  async readAt(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`invalid read offset ${offset}: must be a non-negative integer`);
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InvalidArgumentError(`invalid read length ${length}: must be a non-negative integer`);
    }
    if (this.closed) throw new FailedPreconditionError('read on a closed reader');
    // Past the end is an empty read (io.ReaderAt's EOF); a blob never changes size.
    const n = Math.min(length, Math.max(0, this.size - offset));
    if (n === 0) return Buffer.alloc(0);
    const chunks: Buffer[] = [];
    let got = 0;
    for await (const chunk of readContent(this.client, this.ctx, this.digest, offset, n, this.target)) {
      chunks.push(chunk);
      got += chunk.length;
    }
    const out = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, got);
    return out.length > n ? out.subarray(0, n) : out;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
