import { close as closeFd, fstatSync, openSync, read as readFd, readSync } from 'node:fs';
import {
  type ContentInfo,
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  type IngestStatus,
  InvalidArgumentError,
  NotFoundError,
  type ReaderAt,
  type WalkFunc,
  type Writer,
  type WriterOptions,
} from '@berth/api';

export interface ReaderCacheOptions {
  /** Most blobs kept open at once. */
  maxOpen?: number;
  /** How long an unused open blob stays open. */
  idleMs?: number;
  /**
   * Where the store keeps a committed blob. With it, blobs are opened here and small
   * reads are served synchronously from the page cache (see FileReaderAt).
   */
  blobPath?: (digest: Digest) => string;
}

/**
 * Reads at most this much synchronously. A small positional read of a blob that was just
 * written or read is a copy from the page cache, cheaper than the thread-pool round trip
 * an asynchronous read costs; larger reads go through the pool and never stall the loop.
 */
export const SYNC_READ_MAX = 256 << 10;

/**
 * Small reads land in slices of a shared slab rather than in a Buffer each: a 32 KiB
 * Buffer is its own ArrayBuffer, and one per Read call kept the garbage collector busy.
 * A slice is never reused; the slab is freed once every slice of it is unreferenced.
 */
const SLAB_SIZE = 256 << 10;
/** Slices are only for the bulk reads; a small read that a caller may keep holds no slab. */
const SLICE_MIN = 8 << 10;
const SLICE_MAX = 64 << 10;
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabUsed = 0;

function slabSlice(n: number): Buffer {
  if (n < SLICE_MIN || n > SLICE_MAX) return Buffer.allocUnsafe(n);
  if (slabUsed + n > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  const b = slab.subarray(slabUsed, slabUsed + n);
  // Keep slices 8-byte aligned.
  slabUsed += (n + 7) & ~7;
  return b;
}

/** A committed blob read through a plain file descriptor. */
export class FileReaderAt implements ReaderAt {
  private closed = false;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  /** Opens a blob; NotFound naming the digest when it is not there. */
  static open(path: string, digest: Digest): FileReaderAt {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`content ${digest}: not found`);
      throw err;
    }
    try {
      return new FileReaderAt(fd, fstatSync(fd).size);
    } catch (err) {
      closeFd(fd, () => {});
      throw err;
    }
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`invalid read offset ${offset}: must be a non-negative integer`);
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InvalidArgumentError(`invalid read length ${length}: must be a non-negative integer`);
    }
    if (this.closed) throw new FailedPreconditionError('read on a closed reader');
    const n = Math.min(length, Math.max(0, this.size - offset));
    let done = 0;
    if (n <= SYNC_READ_MAX) {
      const buf = slabSlice(n);
      while (done < n) {
        const got = readSync(this.fd, buf, done, n - done, offset + done);
        if (got === 0) break;
        done += got;
      }
      return done === n ? buf : buf.subarray(0, done);
    }
    const buf = Buffer.allocUnsafe(n);
    while (done < n) {
      const got = await new Promise<number>((resolve, reject) =>
        readFd(this.fd, buf, done, n - done, offset + done, (err, bytes) =>
          err ? reject(err) : resolve(bytes),
        ),
      );
      if (got === 0) break;
      done += got;
    }
    return done === n ? buf : buf.subarray(0, done);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => closeFd(this.fd, () => resolve()));
  }
}

interface Entry {
  digest: Digest;
  opening: Promise<ReaderAt>;
  reader?: ReaderAt;
  refs: number;
  /** Closes the entry once it has been unused for idleMs; armed once, not per call. */
  timer?: NodeJS.Timeout;
  /** When the last reader closed (Date.now()). */
  idleSince: number;
  /** Deleted or evicted: close as soon as nobody reads it. */
  retired: boolean;
}

/**
 * A content store that keeps recently read blobs open. containerd's clients read a blob
 * through one Read call per 32 KiB (ctr content get, the remote ReaderAt), so opening,
 * stat-ing and closing the file per call would dominate; a blob never changes once
 * committed, so its open file can be shared. Deleting through this store retires the
 * entry first, so a deleted blob is never served from the cache. Everything else passes
 * straight through.
 */
export class ReaderCacheStore implements ContentStore {
  private readonly entries = new Map<Digest, Entry>();
  private readonly maxOpen: number;
  private readonly idleMs: number;
  private readonly blobPath?: (digest: Digest) => string;

  constructor(
    private readonly inner: ContentStore,
    opts: ReaderCacheOptions = {},
  ) {
    this.maxOpen = opts.maxOpen ?? 64;
    this.idleMs = opts.idleMs ?? 2000;
    this.blobPath = opts.blobPath;
  }

  private open(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt> {
    if (!this.blobPath) return this.inner.readerAt(ctx, desc);
    try {
      return Promise.resolve(FileReaderAt.open(this.blobPath(desc.digest), desc.digest));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Number of blobs currently held open (for tests). */
  get openCount(): number {
    return this.entries.size;
  }

  async readerAt(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt> {
    let entry = this.entries.get(desc.digest);
    if (!entry) {
      const opening = this.open(ctx, desc);
      entry = { digest: desc.digest, opening, refs: 0, retired: false, idleSince: 0 };
      this.entries.set(desc.digest, entry);
      const e = entry;
      opening.then(
        (r) => {
          e.reader = r;
        },
        () => {
          if (this.entries.get(e.digest) === e) this.entries.delete(e.digest);
        },
      );
      this.evict();
    } else {
      // Most recently used last: Map keeps insertion order.
      this.entries.delete(desc.digest);
      this.entries.set(desc.digest, entry);
    }
    entry.refs++;
    let reader: ReaderAt;
    try {
      reader = await entry.opening;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    return this.handle(entry, reader);
  }

  private handle(entry: Entry, reader: ReaderAt): ReaderAt {
    let closed = false;
    return {
      size: reader.size,
      readAt: (offset, length) => reader.readAt(offset, length),
      close: async () => {
        if (closed) return;
        closed = true;
        entry.refs--;
        if (entry.refs > 0) return;
        if (entry.retired) {
          await reader.close();
          return;
        }
        entry.idleSince = Date.now();
        if (!entry.timer) this.armIdle(entry, this.idleMs);
      },
    };
  }

  /**
   * One timer per entry, left running while the blob is read (ctr reads one 32 KiB
   * range per call; a timer set and cleared per call was measurable): when it fires, an
   * entry idle long enough is retired, one still in use is left for its next close.
   */
  private armIdle(entry: Entry, ms: number): void {
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (entry.retired || entry.refs > 0) return;
      const left = entry.idleSince + this.idleMs - Date.now();
      if (left > 0) this.armIdle(entry, left);
      else this.retire(entry);
    }, ms);
    entry.timer.unref();
  }

  /** Takes an entry out of the cache; its file closes once the last reader is done. */
  private retire(entry: Entry): void {
    if (this.entries.get(entry.digest) === entry) this.entries.delete(entry.digest);
    if (entry.retired) return;
    entry.retired = true;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    if (entry.refs === 0) {
      entry.opening.then(
        (r) => r.close(),
        () => {},
      );
    }
  }

  private evict(): void {
    if (this.entries.size <= this.maxOpen) return;
    for (const entry of this.entries.values()) {
      if (this.entries.size <= this.maxOpen) return;
      if (entry.refs === 0 && entry.reader) this.retire(entry);
    }
  }

  async delete(ctx: Context, digest: Digest): Promise<void> {
    const entry = this.entries.get(digest);
    if (entry) this.retire(entry);
    await this.inner.delete(ctx, digest);
  }

  /** Closes every cached file (the daemon's shutdown). */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    for (const e of all) this.retire(e);
    await Promise.all(all.map((e) => e.opening.catch(() => undefined)));
  }

  info(ctx: Context, digest: Digest): Promise<ContentInfo> {
    return this.inner.info(ctx, digest);
  }

  update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths?: string[],
  ): Promise<ContentInfo> {
    return this.inner.update(ctx, info, fieldpaths);
  }

  walk(ctx: Context, fn: WalkFunc, filters?: string[]): Promise<void> {
    return this.inner.walk(ctx, fn, filters);
  }

  status(ctx: Context, ref: string): Promise<IngestStatus> {
    return this.inner.status(ctx, ref);
  }

  listStatuses(ctx: Context, filters?: string[]): Promise<IngestStatus[]> {
    return this.inner.listStatuses(ctx, filters);
  }

  abort(ctx: Context, ref: string): Promise<void> {
    return this.inner.abort(ctx, ref);
  }

  writer(ctx: Context, opts: WriterOptions): Promise<Writer> {
    return this.inner.writer(ctx, opts);
  }
}
