import {
  type ContentInfo,
  type ContentStore,
  type Context,
  contentInfoFromWire,
  type Descriptor,
  type Digest,
  type IngestStatus,
  InvalidArgumentError,
  ingestStatusFromWire,
  type ReaderAt,
  type WalkFunc,
  type Writer,
  type WriterOptions,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { RemoteReaderAt, readContent } from './content-reader';
import { RemoteWriter } from './content-writer';
import { serverStream, unary } from './rpc';

export interface ReadOptions {
  /** First byte to read. */
  offset?: number;
  /** Bytes to read; 0 (the default) reads to the end. */
  size?: number;
}

/** A ContentStore over containerd.services.content.v1.Content, as containerd's content/proxy. */
export class RemoteContentStore implements ContentStore {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async info(ctx: Context, digest: Digest): Promise<ContentInfo> {
    const res = await unary<wire.content.InfoResponse>(this.client, 'Info', { digest }, ctx, this.target);
    return contentInfoFromWire(res.info!);
  }

  async update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<ContentInfo> {
    const res = await unary<wire.content.InfoResponse>(
      this.client,
      'Update',
      { info: { digest: info.digest, labels: info.labels ?? {} }, updateMask: fieldpaths },
      ctx,
      this.target,
    );
    return contentInfoFromWire(res.info!);
  }

  async walk(ctx: Context, fn: WalkFunc, filters: string[] = []): Promise<void> {
    const stream = serverStream<wire.content.ListContentResponse>(
      this.client,
      'List',
      { filters },
      ctx,
      this.target,
    );
    for await (const batch of stream) {
      for (const info of batch.info) await fn(contentInfoFromWire(info));
    }
  }

  /** Every committed blob matching filters (walk, collected). */
  async list(ctx: Context, filters: string[] = []): Promise<ContentInfo[]> {
    const out: ContentInfo[] = [];
    await this.walk(ctx, (info) => void out.push(info), filters);
    return out;
  }

  async delete(ctx: Context, digest: Digest): Promise<void> {
    await unary(this.client, 'Delete', { digest }, ctx, this.target);
  }

  async readerAt(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt> {
    // The size comes from the server: it also proves the blob exists in this namespace.
    const info = await this.info(ctx, desc.digest);
    return new RemoteReaderAt(this.client, ctx, desc.digest, info.size, this.target);
  }

  /** Streams a blob (or a range of it) in the chunks the server sends; ends the call if abandoned. */
  read(ctx: Context, digest: Digest, opts: ReadOptions = {}): AsyncGenerator<Buffer> {
    const { offset = 0, size = 0 } = opts;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(size) || size < 0) {
      throw new InvalidArgumentError(`invalid read range offset=${offset} size=${size}`);
    }
    return readContent(this.client, ctx, digest, offset, size, this.target);
  }

  async status(ctx: Context, ref: string): Promise<IngestStatus> {
    const res = await unary<wire.content.StatusResponse>(this.client, 'Status', { ref }, ctx, this.target);
    return ingestStatusFromWire(res.status!);
  }

  async listStatuses(ctx: Context, filters: string[] = []): Promise<IngestStatus[]> {
    const res = await unary<wire.content.ListStatusesResponse>(
      this.client,
      'ListStatuses',
      { filters },
      ctx,
      this.target,
    );
    return res.statuses.map(ingestStatusFromWire);
  }

  async abort(ctx: Context, ref: string): Promise<void> {
    await unary(this.client, 'Abort', { ref }, ctx, this.target);
  }

  writer(ctx: Context, opts: WriterOptions): Promise<Writer> {
    return RemoteWriter.open(this.client, ctx, opts, this.target);
  }
}
