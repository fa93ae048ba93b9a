import type { Context } from './context';
import type { Descriptor } from './descriptor';
import type { Digest } from './digest';
import type { Labels } from './labels';

/** What the store knows of a committed blob. */
export interface ContentInfo {
  digest: Digest;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  labels: Labels;
}

/** The state of an ingest (an open or abandoned write), keyed by its ref. */
export interface IngestStatus {
  ref: string;
  offset: number;
  total: number;
  expected: Digest;
  startedAt: Date;
  updatedAt: Date;
}

/** Random access to a committed blob. */
export interface ReaderAt {
  readonly size: number;
  /** Reads up to `length` bytes at `offset`; a short read only at the end. */
  readAt(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export interface CommitOptions {
  labels?: Labels;
}

/** An open ingest. Only one writer holds a ref at a time. */
export interface Writer {
  readonly ref: string;
  /** Appends at the current offset. */
  write(data: Buffer): Promise<void>;
  /** The digest of everything written so far. */
  digest(): Digest;
  status(): Promise<IngestStatus>;
  /** Drops everything past `size` (containerd's writers accept only 0). */
  truncate(size: number): Promise<void>;
  /**
   * Verifies size (when > 0) and digest (when given), then makes the blob visible
   * atomically. FailedPrecondition on mismatch, AlreadyExists when the blob is present.
   */
  commit(size: number, expected?: Digest, opts?: CommitOptions): Promise<void>;
  /** Releases the ref; the ingest stays on disk for a later resume. */
  close(): Promise<void>;
}

export interface WriterOptions {
  ref: string;
  /** Expected descriptor: size and digest are checked at commit. */
  desc?: Partial<Descriptor>;
}

export interface Provider {
  readerAt(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt>;
}

export interface Ingester {
  writer(ctx: Context, opts: WriterOptions): Promise<Writer>;
}

export type WalkFunc = (info: ContentInfo) => void | Promise<void>;

export interface Manager {
  info(ctx: Context, digest: Digest): Promise<ContentInfo>;
  /** Updates the fields named by `fieldpaths` (`labels`, `labels.<key>`); all labels when empty. */
  update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths?: string[],
  ): Promise<ContentInfo>;
  walk(ctx: Context, fn: WalkFunc, filters?: string[]): Promise<void>;
  delete(ctx: Context, digest: Digest): Promise<void>;
}

export interface IngestManager {
  status(ctx: Context, ref: string): Promise<IngestStatus>;
  listStatuses(ctx: Context, filters?: string[]): Promise<IngestStatus[]>;
  abort(ctx: Context, ref: string): Promise<void>;
}

export interface ContentStore extends Manager, Provider, IngestManager, Ingester {}

/** Reads a whole blob (for small content: manifests, configs). */
export async function readBlob(
  provider: Provider,
  ctx: Context,
  desc: Pick<Descriptor, 'digest'>,
): Promise<Buffer> {
  const ra = await provider.readerAt(ctx, desc);
  try {
    return await ra.readAt(0, ra.size);
  } finally {
    await ra.close();
  }
}
