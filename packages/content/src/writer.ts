import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type CommitOptions,
  type Digest,
  FailedPreconditionError,
  formatRFC3339Nano,
  type IngestStatus,
  InvalidArgumentError,
  isNoSpaceErrno,
  noSpaceError,
  type ParsedDigest,
  parseDigest,
  preciseNow,
  validateLabels,
  type Writer,
  writeFileAtomic,
} from '@berth/api';
import { isErrno, readFully, writeFully } from './fs-util';
import { INGEST_FILES } from './ingest';

const REHASH_CHUNK = 1 << 20;

/** Hashes the first `size` bytes of an open file. */
export async function hashFile(
  fh: FileHandle,
  size: number,
  algorithm: ParsedDigest['algorithm'],
): Promise<Hash> {
  const hash = createHash(algorithm);
  for (let pos = 0; pos < size; ) {
    const chunk = await readFully(fh, Math.min(REHASH_CHUNK, size - pos), pos);
    if (chunk.length === 0) break;
    hash.update(chunk);
    pos += chunk.length;
  }
  return hash;
}

/** What the writer asks of its store when it commits or finishes. */
export interface WriterHost {
  /** Makes the verified ingest visible as `digest`; AlreadyExists when it is there already. */
  publish(w: LocalWriter, digest: Digest, labels: CommitOptions['labels']): Promise<void>;
  /** Removes the ingest directory. */
  removeIngest(dir: string): Promise<void>;
  /**
   * Releases the ref lock. With `pending`, at once, the next holder waiting for `pending`
   * before it reads the ingest.
   */
  release(w: LocalWriter, pending?: Promise<unknown>): void;
}

export interface LocalWriterInit {
  ref: string;
  dir: string;
  fh: FileHandle;
  offset: number;
  total: number;
  expected: Digest;
  algorithm: ParsedDigest['algorithm'];
  hash: Hash;
  startedAt: Date;
  updatedAt: Date;
}

type State = 'open' | 'committed' | 'closed' | 'aborted';

/**
 * An open ingest. Every operation runs in order on one promise chain, so a caller that does
 * not await each write still gets its bytes in order and a digest that matches the file.
 * The write path is one positioned write plus one hash update per chunk: no copy, no fsync.
 */
export class LocalWriter implements Writer {
  readonly ref: string;
  readonly dir: string;
  readonly algorithm: ParsedDigest['algorithm'];
  private readonly fh: FileHandle;
  private offset: number;
  private total: number;
  private readonly expected: Digest;
  private hash: Hash;
  private readonly startedAt: Date;
  private updatedAt: Date;
  private state: State = 'open';
  /** Set when a failed write could not be rolled back: file and hash may disagree. */
  private broken: unknown;
  private tail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly host: WriterHost,
    init: LocalWriterInit,
  ) {
    this.ref = init.ref;
    this.dir = init.dir;
    this.fh = init.fh;
    this.offset = init.offset;
    this.total = init.total;
    this.expected = init.expected;
    this.algorithm = init.algorithm;
    this.hash = init.hash;
    this.startedAt = init.startedAt;
    this.updatedAt = init.updatedAt;
  }

  get dataPath(): string {
    return join(this.dir, INGEST_FILES.data);
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.catch(() => {});
    return p;
  }

  private assertOpen(): void {
    switch (this.state) {
      case 'open':
        if (this.broken !== undefined) {
          throw new FailedPreconditionError(`writer for ref ${this.ref} failed; reopen it to resume`, {
            cause: this.broken,
          });
        }
        return;
      case 'committed':
        throw new FailedPreconditionError(`writer for ref ${this.ref} has already committed`);
      case 'closed':
        throw new FailedPreconditionError(`writer for ref ${this.ref} is closed`);
      case 'aborted':
        throw new FailedPreconditionError(`ingest ref ${JSON.stringify(this.ref)} was aborted`);
    }
  }

  write(data: Buffer): Promise<void> {
    return this.run(async () => {
      this.assertOpen();
      if (data.length === 0) return;
      // Start the positioned write (libuv's pool), then hash on this thread meanwhile.
      const written = writeFully(this.fh, data, this.offset);
      this.hash.update(data);
      try {
        await written;
      } catch (e) {
        // What landed of a write that did not fit goes: the ingest stays resumable at offset.
        await this.rollback(e);
        throw noSpaceError(e, this.dataPath, `ingest ref ${JSON.stringify(this.ref)}`);
      }
      this.offset += data.length;
      this.updatedAt = preciseNow();
    });
  }

  /** After a failed write: drop what part of it landed and rebuild the hash from disk. */
  private async rollback(cause: unknown): Promise<void> {
    try {
      await this.fh.truncate(this.offset);
      this.hash = await hashFile(this.fh, this.offset, this.algorithm);
    } catch {
      this.broken = cause;
    }
  }

  digest(): Digest {
    return `${this.algorithm}:${this.hash.copy().digest('hex')}`;
  }

  status(): Promise<IngestStatus> {
    return Promise.resolve(this.snapshot());
  }

  /** The status without waiting for queued operations (what the store reports for a live ref). */
  snapshot(): IngestStatus {
    return {
      ref: this.ref,
      offset: this.offset,
      total: this.total,
      expected: this.expected,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
    };
  }

  truncate(size: number): Promise<void> {
    return this.run(async () => {
      this.assertOpen();
      if (!Number.isSafeInteger(size) || size < 0 || size > this.offset) {
        throw new InvalidArgumentError(
          `invalid truncate size ${size}: must be between 0 and offset ${this.offset}`,
        );
      }
      await this.fh.truncate(size);
      this.hash = size === 0 ? createHash(this.algorithm) : await hashFile(this.fh, size, this.algorithm);
      this.offset = size;
      this.updatedAt = preciseNow();
    });
  }

  commit(size: number, expected?: Digest, opts: CommitOptions = {}): Promise<void> {
    return this.run(async () => {
      this.assertOpen();
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new InvalidArgumentError(`invalid commit size ${size}: must be a non-negative integer`);
      }
      const wantDigest = expected || this.expected || undefined;
      const want = wantDigest ? parseDigest(wantDigest) : undefined;
      validateLabels(opts.labels);

      // Size and digest default to what the writer was opened with (the daemon's Write
      // service passes the declared total and digest the same way).
      const wantSize = size > 0 ? size : this.total;
      if (wantSize > 0 && wantSize !== this.offset) {
        throw new FailedPreconditionError(`unexpected commit size ${this.offset}, expected ${wantSize}`);
      }
      let actual = this.digest();
      if (want && want.algorithm !== this.algorithm) {
        actual = `${want.algorithm}:${(await hashFile(this.fh, this.offset, want.algorithm)).digest('hex')}`;
      }
      if (wantDigest && actual !== wantDigest) {
        throw new FailedPreconditionError(`unexpected commit digest ${actual}, expected ${wantDigest}`);
      }

      try {
        await this.fh.sync();
      } catch (e) {
        throw noSpaceError(e, this.dataPath, `commit of ingest ref ${JSON.stringify(this.ref)}`);
      }
      try {
        await this.host.publish(this, actual, opts.labels);
      } catch (e) {
        if ((e as { code?: string }).code === 'ERR_ALREADY_EXISTS') await this.finish('committed', true);
        throw e;
      }
      await this.finish('committed', true);
    });
  }

  /** The open file, for the store's publish step (chmod, utimes). */
  get handle(): FileHandle {
    return this.fh;
  }

  /**
   * Frees the ref before this call returns, then persists the ingest's times and closes
   * the file after the queued operations: containerd's client reopens the ref as soon as
   * it has closed, and the store makes that writer wait for this work (locks.ts).
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const open = this.state === 'open';
    this.closing = this.run(async () => {
      if (this.state !== 'open') return;
      try {
        await writeFileAtomic(join(this.dir, INGEST_FILES.updatedAt), formatRFC3339Nano(this.updatedAt));
      } catch (e) {
        // Aborted from elsewhere (another store on this root): nothing left to keep. On a
        // full disk the older time stays: the ingest itself is intact and resumable.
        if (!isErrno(e, 'ENOENT') && !isNoSpaceErrno(e)) throw e;
      } finally {
        await this.finish('closed', false);
      }
    });
    if (open) this.host.release(this, this.closing);
    return this.closing;
  }

  /** Called by the store's abort: the ingest goes away under this writer. */
  abort(): Promise<void> {
    return this.run(async () => {
      if (this.state !== 'open') return;
      await this.finish('aborted', true);
    });
  }

  private async finish(state: State, removeIngest: boolean): Promise<void> {
    this.state = state;
    try {
      await this.fh.close();
      // The ingest goes before the lock does, so the next writer on this ref starts afresh.
      if (removeIngest) await this.host.removeIngest(this.dir);
    } finally {
      this.host.release(this);
    }
  }
}
