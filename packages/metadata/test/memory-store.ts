import { createHash } from 'node:crypto';
import {
  AlreadyExistsError,
  applyLabelPaths,
  type CommitOptions,
  type ContentInfo,
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  type IngestStatus,
  InvalidArgumentError,
  NotFoundError,
  parseFilters,
  type ReaderAt,
  UnavailableError,
  type WalkFunc,
  type Writer,
  type WriterOptions,
} from '@berth/api';

interface Blob {
  data: Buffer;
  info: ContentInfo;
}

interface Ingest {
  chunks: Buffer[];
  size: number;
  total: number;
  startedAt: Date;
  updatedAt: Date;
  locked: boolean;
  aborted?: boolean;
}

/**
 * A plain, un-namespaced content store in memory: the backing store a unit test hands
 * to the metadata layer. `failNextWriter` makes the next writer() call throw.
 */
export class MemoryContentStore implements ContentStore {
  readonly blobs = new Map<Digest, Blob>();
  readonly ingests = new Map<string, Ingest>();
  failNextWriter: Error | undefined;
  /** Every call to the store, for assertions on what the metadata layer forwards. */
  readonly calls: string[] = [];

  async info(_ctx: Context, digest: Digest): Promise<ContentInfo> {
    const b = this.blobs.get(digest);
    if (!b) throw new NotFoundError(`content ${digest}: not found`);
    return { ...b.info, labels: { ...b.info.labels } };
  }

  async update(_ctx: Context, info: Pick<ContentInfo, 'digest' | 'labels'>, paths: string[] = []) {
    const b = this.blobs.get(info.digest);
    if (!b) throw new NotFoundError(`content ${info.digest}: not found`);
    b.info.labels = applyLabelPaths(b.info.labels, info.labels, paths) ?? b.info.labels;
    b.info.updatedAt = new Date();
    return { ...b.info };
  }

  async walk(_ctx: Context, fn: WalkFunc, filters?: string[]): Promise<void> {
    const f = parseFilters(filters);
    for (const b of [...this.blobs.values()]) {
      if (f.match((p) => (p[0] === 'digest' ? b.info.digest : undefined))) await fn({ ...b.info });
    }
  }

  async delete(_ctx: Context, digest: Digest): Promise<void> {
    this.calls.push(`delete ${digest}`);
    if (!this.blobs.delete(digest)) throw new NotFoundError(`content ${digest}: not found`);
  }

  async readerAt(_ctx: Context, desc: Pick<Descriptor, 'digest'>): Promise<ReaderAt> {
    const b = this.blobs.get(desc.digest);
    if (!b) throw new NotFoundError(`content ${desc.digest}: not found`);
    const data = b.data;
    return {
      size: data.length,
      readAt: async (offset, length) => Buffer.from(data.subarray(offset, offset + length)),
      close: async () => {},
    };
  }

  async status(_ctx: Context, ref: string): Promise<IngestStatus> {
    const i = this.ingests.get(ref);
    if (!i) throw new NotFoundError(`ref ${ref}: not found`);
    return statusOf(ref, i);
  }

  async listStatuses(_ctx: Context): Promise<IngestStatus[]> {
    return [...this.ingests].map(([ref, i]) => statusOf(ref, i));
  }

  async abort(_ctx: Context, ref: string): Promise<void> {
    this.calls.push(`abort ${ref}`);
    const i = this.ingests.get(ref);
    if (!i) throw new NotFoundError(`ref ${ref}: not found`);
    // As the local store: aborting a live ingest makes its writer useless.
    i.aborted = true;
    this.ingests.delete(ref);
  }

  async writer(_ctx: Context, opts: WriterOptions): Promise<Writer> {
    this.calls.push(`writer ${opts.ref}`);
    if (this.failNextWriter) {
      const e = this.failNextWriter;
      this.failNextWriter = undefined;
      throw e;
    }
    if (!opts.ref) throw new InvalidArgumentError('ref must not be empty');
    if (opts.desc?.digest && this.blobs.has(opts.desc.digest)) {
      throw new AlreadyExistsError(`content ${opts.desc.digest}: already exists`);
    }
    let ingest = this.ingests.get(opts.ref);
    if (ingest?.locked) throw new UnavailableError(`ref ${opts.ref}: locked`);
    if (!ingest) {
      const now = new Date();
      ingest = {
        chunks: [],
        size: 0,
        total: opts.desc?.size ?? 0,
        startedAt: now,
        updatedAt: now,
        locked: false,
      };
      this.ingests.set(opts.ref, ingest);
    }
    ingest.locked = true;
    return new MemoryWriter(this, opts.ref, ingest, opts.desc?.digest);
  }
}

function statusOf(ref: string, i: Ingest): IngestStatus {
  return {
    ref,
    offset: i.size,
    total: i.total,
    expected: '',
    startedAt: i.startedAt,
    updatedAt: i.updatedAt,
  };
}

class MemoryWriter implements Writer {
  private done = false;
  constructor(
    private readonly store: MemoryContentStore,
    readonly ref: string,
    private readonly ingest: Ingest,
    private readonly expected: Digest | undefined,
  ) {}

  private data(): Buffer {
    return Buffer.concat(this.ingest.chunks);
  }

  async write(data: Buffer): Promise<void> {
    this.ingest.chunks.push(Buffer.from(data));
    this.ingest.size += data.length;
    this.ingest.updatedAt = new Date();
  }

  digest(): Digest {
    return `sha256:${createHash('sha256').update(this.data()).digest('hex')}`;
  }

  async status(): Promise<IngestStatus> {
    return statusOf(this.ref, this.ingest);
  }

  async truncate(size: number): Promise<void> {
    const data = this.data().subarray(0, size);
    this.ingest.chunks = [Buffer.from(data)];
    this.ingest.size = data.length;
  }

  async commit(size: number, expected?: Digest, opts?: CommitOptions): Promise<void> {
    if (this.ingest.aborted) throw new NotFoundError(`ref ${this.ref}: aborted`);
    const data = this.data();
    if (size > 0 && size !== data.length) {
      throw new FailedPreconditionError(`commit size ${size} != ${data.length}`);
    }
    if (this.ingest.total > 0 && this.ingest.total !== data.length) {
      throw new FailedPreconditionError(`expected size ${this.ingest.total} != ${data.length}`);
    }
    const actual = this.digest();
    const want = expected ?? this.expected;
    if (want && want !== actual)
      throw new FailedPreconditionError(`unexpected commit digest ${actual}, expected ${want}`);
    this.store.ingests.delete(this.ref);
    this.done = true;
    if (this.store.blobs.has(actual)) throw new AlreadyExistsError(`content ${actual}: already exists`);
    const now = new Date();
    this.store.blobs.set(actual, {
      data,
      info: {
        digest: actual,
        size: data.length,
        createdAt: now,
        updatedAt: now,
        labels: { ...opts?.labels },
      },
    });
  }

  async close(): Promise<void> {
    if (!this.done) this.ingest.locked = false;
  }
}
