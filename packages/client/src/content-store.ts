import {
  type ContentInfo,
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  type IngestStatus,
  InvalidArgumentError,
  type Labels,
  type ReaderAt,
  type WalkFunc,
  type Writer,
  type WriterOptions,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { RemoteReaderAt, readContent } from './content-reader';
import { RemoteWriter } from './content-writer';
import { serverStream, type Timestamp, toDate, unary } from './rpc';

/** containerd.services.content.v1.Info as the loader decodes it. */
interface InfoMessage {
  digest: string;
  size: number;
  createdAt: Timestamp | null;
  updatedAt: Timestamp | null;
  labels: Labels;
}

interface StatusMessage {
  startedAt: Timestamp | null;
  updatedAt: Timestamp | null;
  ref: string;
  offset: number;
  total: number;
  expected: string;
}

function infoFromMessage(m: InfoMessage): ContentInfo {
  return {
    digest: m.digest,
    size: m.size,
    createdAt: toDate(m.createdAt),
    updatedAt: toDate(m.updatedAt),
    labels: { ...(m.labels ?? {}) },
  };
}

function statusFromMessage(m: StatusMessage): IngestStatus {
  return {
    ref: m.ref,
    offset: m.offset,
    total: m.total,
    expected: m.expected,
    startedAt: toDate(m.startedAt),
    updatedAt: toDate(m.updatedAt),
  };
}

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
    const res = await unary<{ info: InfoMessage }>(this.client, 'Info', { digest }, ctx, this.target);
    return infoFromMessage(res.info);
  }

  async update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<ContentInfo> {
    const res = await unary<{ info: InfoMessage }>(
      this.client,
      'Update',
      { info: { digest: info.digest, labels: info.labels ?? {} }, updateMask: { paths: fieldpaths } },
      ctx,
      this.target,
    );
    return infoFromMessage(res.info);
  }

  async walk(ctx: Context, fn: WalkFunc, filters: string[] = []): Promise<void> {
    const stream = serverStream<{ info: InfoMessage[] }>(this.client, 'List', { filters }, ctx, this.target);
    for await (const batch of stream) {
      for (const info of batch.info) await fn(infoFromMessage(info));
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
    const res = await unary<{ status: StatusMessage }>(this.client, 'Status', { ref }, ctx, this.target);
    return statusFromMessage(res.status);
  }

  async listStatuses(ctx: Context, filters: string[] = []): Promise<IngestStatus[]> {
    const res = await unary<{ statuses: StatusMessage[] }>(
      this.client,
      'ListStatuses',
      { filters },
      ctx,
      this.target,
    );
    return res.statuses.map(statusFromMessage);
  }

  async abort(ctx: Context, ref: string): Promise<void> {
    await unary(this.client, 'Abort', { ref }, ctx, this.target);
  }

  writer(ctx: Context, opts: WriterOptions): Promise<Writer> {
    return RemoteWriter.open(this.client, ctx, opts, this.target);
  }
}
