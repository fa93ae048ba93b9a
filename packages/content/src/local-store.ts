import { createHash, randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  AlreadyExistsError,
  applyLabelPaths,
  CanceledError,
  type ContentInfo,
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  type FieldAdaptor,
  formatRFC3339Nano,
  type IngestStatus,
  InvalidArgumentError,
  type Labels,
  labelField,
  NanoDate,
  NotFoundError,
  noSpaceError,
  nowNanos,
  type ParsedDigest,
  parseDigest,
  parseFilters,
  parseRFC3339,
  preciseNow,
  type ReaderAt,
  UnavailableError,
  validateLabels,
  type WalkFunc,
  type WriterOptions,
  writeFileAtomic,
} from '@berth/api';
import { isErrno, syncDir, unlinkIfExists } from './fs-util';
import { INGEST_FILES, ingestDirName, readIngest, TMP_PREFIX } from './ingest';
import { lockHolder, serialize, settled, tryLock, unlock } from './locks';
import { LocalReaderAt } from './reader';
import { hashFile, LocalWriter, type WriterHost } from './writer';

export interface LocalStoreOptions {
  /** The store's directory; created when missing. */
  root: string;
  /**
   * Keep blob labels in `<root>/labels` (default true). A store used underneath a
   * metadata store, which keeps labels per namespace, may turn this off: labels given to
   * commit are then dropped and `update` is FailedPrecondition, as containerd's NewStore.
   */
  labels?: boolean;
}

const ALGORITHMS: readonly ParsedDigest['algorithm'][] = ['sha256', 'sha384', 'sha512'];
const HEX = /^[a-f0-9]+$/;
/** Half-built ingests older than this are debris from a crash, removed at open. */
const STALE_TMP_MS = 60 * 60 * 1000;

interface LabelRecord {
  labels: Labels;
  updatedAt: string;
}

function checkSignal(ctx: Context | undefined): void {
  if (ctx?.signal?.aborted) throw new CanceledError('operation canceled', { cause: ctx.signal.reason });
}

function validateRef(ref: unknown): string {
  if (typeof ref !== 'string' || ref === '') throw new InvalidArgumentError('ref must not be empty');
  return ref;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

function adaptInfo(info: ContentInfo): FieldAdaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case 'digest':
        return fieldpath.length === 1 ? info.digest : undefined;
      case 'size':
        return fieldpath.length === 1 ? String(info.size) : undefined;
      case 'labels':
        return labelField(info.labels, fieldpath);
      default:
        return undefined;
    }
  };
}

/**
 * containerd's local content store: blobs addressed by digest, resumable ingests keyed by
 * ref, a blob visible only once its size and digest check out. Usable on its own.
 */
export class LocalStore implements ContentStore {
  readonly root: string;
  private readonly keepLabels: boolean;
  private readonly host: WriterHost;

  private constructor(opts: LocalStoreOptions) {
    this.root = resolve(opts.root);
    this.keepLabels = opts.labels ?? true;
    this.host = {
      publish: (w, digest, labels) => this.publish(w, digest, labels),
      removeIngest: (dir) => rm(dir, { recursive: true, force: true }),
      release: (w, pending) => {
        const held = lockHolder<LocalWriter>(this.root, w.ref);
        if (held?.writer === w) unlock(this.root, w.ref, held, pending);
      },
    };
  }

  static async open(opts: LocalStoreOptions): Promise<LocalStore> {
    const store = new LocalStore(opts);
    await mkdir(join(store.root, 'blobs', 'sha256'), { recursive: true });
    await mkdir(store.ingestRoot, { recursive: true });
    if (store.keepLabels) await mkdir(join(store.root, 'labels'), { recursive: true });
    await store.removeStaleTmp();
    return store;
  }

  private get ingestRoot(): string {
    return join(this.root, 'ingest');
  }

  /** `<root>/blobs/<algorithm>/<hex>`; InvalidArgument for a malformed digest. */
  blobPath(digest: Digest): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.root, 'blobs', algorithm, hex);
  }

  private labelsPath(digest: Digest): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.root, 'labels', algorithm, `${hex}.json`);
  }

  private ingestDir(ref: string): string {
    return join(this.ingestRoot, ingestDirName(ref));
  }

  /** Runs fn after every earlier fn for the same digest (commit, update, delete). */
  private serialize<T>(digest: Digest, fn: () => Promise<T>): Promise<T> {
    return serialize(this.root, digest, fn);
  }

  private async removeStaleTmp(): Promise<void> {
    const now = Date.now();
    for (const name of await readdir(this.ingestRoot)) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      const p = join(this.ingestRoot, name);
      const st = await stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > STALE_TMP_MS) await rm(p, { recursive: true, force: true });
    }
  }

  // ---- Provider ----

  async readerAt(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt> {
    checkSignal(ctx);
    const p = this.blobPath(desc.digest);
    let fh: FileHandle;
    try {
      fh = await open(p, 'r');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) throw new NotFoundError(`content ${desc.digest}: not found`);
      throw e;
    }
    try {
      const st = await fh.stat();
      return new LocalReaderAt(fh, st.size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  // ---- Manager ----

  async info(ctx: Context, digest: Digest): Promise<ContentInfo> {
    checkSignal(ctx);
    const p = this.blobPath(digest);
    let size: number;
    let createdAt: NanoDate;
    try {
      const st = await stat(p, { bigint: true });
      size = Number(st.size);
      // Commit sets the mtime to the commit time; read with its nanoseconds.
      createdAt = new NanoDate(st.mtimeNs);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) throw new NotFoundError(`content ${digest}: not found`);
      throw e;
    }
    const rec = this.keepLabels ? await this.readLabels(digest) : undefined;
    const updatedAt = (rec && parseRFC3339(rec.updatedAt)) || createdAt;
    return {
      digest,
      size,
      createdAt,
      updatedAt,
      labels: rec?.labels ?? {},
    };
  }

  private async readLabels(digest: Digest): Promise<LabelRecord | undefined> {
    const p = this.labelsPath(digest);
    let text: string;
    try {
      text = await readFile(p, 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return undefined;
      throw e;
    }
    try {
      const rec = JSON.parse(text) as LabelRecord;
      if (typeof rec !== 'object' || rec === null || typeof rec.labels !== 'object')
        throw new Error('not a record');
      return rec;
    } catch (e) {
      throw new Error(`labels of ${digest} unreadable at ${p}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Replaces a blob's label record atomically and durably. */
  private async writeLabels(digest: Digest, labels: Labels, updatedAt: Date): Promise<void> {
    const p = this.labelsPath(digest);
    await mkdir(dirname(p), { recursive: true });
    const rec: LabelRecord = { labels, updatedAt: formatRFC3339Nano(updatedAt) };
    await writeFileAtomic(p, JSON.stringify(rec), { sync: true });
  }

  async update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<ContentInfo> {
    checkSignal(ctx);
    const digest = info.digest;
    parseDigest(digest);
    for (const path of fieldpaths) {
      if (path === 'labels' || (path.startsWith('labels.') && path.length > 'labels.'.length)) continue;
      throw new InvalidArgumentError(
        `cannot update ${JSON.stringify(path)} field on content info ${JSON.stringify(digest)}`,
      );
    }
    validateLabels(info.labels);
    if (!this.keepLabels) {
      throw new FailedPreconditionError(`update of content ${digest}: labels are not kept by this store`);
    }
    return this.serialize(digest, async () => {
      const current = await this.info(ctx, digest);
      const labels = applyLabelPaths(current.labels, info.labels ?? {}, fieldpaths) ?? current.labels;
      const updatedAt = preciseNow();
      await this.writeLabels(digest, labels, updatedAt);
      return { ...current, labels, updatedAt };
    });
  }

  async walk(ctx: Context, fn: WalkFunc, filters?: string[]): Promise<void> {
    checkSignal(ctx);
    const filter = parseFilters(filters);
    for (const algorithm of ALGORITHMS) {
      let names: string[];
      try {
        names = await readdir(join(this.root, 'blobs', algorithm));
      } catch (e) {
        if (isErrno(e, 'ENOENT')) continue;
        throw e;
      }
      names.sort();
      for (const name of names) {
        if (!HEX.test(name)) continue; // not a blob: debris or a foreign file
        checkSignal(ctx);
        let info: ContentInfo;
        try {
          info = await this.info(ctx, `${algorithm}:${name}`);
        } catch (e) {
          // Deleted while we walked, or a name of the wrong length.
          if ((e as { code?: string }).code === 'ERR_NOT_FOUND') continue;
          if ((e as { code?: string }).code === 'ERR_INVALID_ARGUMENT') continue;
          throw e;
        }
        if (filter.match(adaptInfo(info))) await fn(info);
      }
    }
  }

  async delete(ctx: Context, digest: Digest): Promise<void> {
    checkSignal(ctx);
    const p = this.blobPath(digest);
    await this.serialize(digest, async () => {
      try {
        await rm(p);
      } catch (e) {
        if (isErrno(e, 'ENOENT')) throw new NotFoundError(`content ${digest}: not found`);
        throw e;
      }
      if (this.keepLabels) await unlinkIfExists(this.labelsPath(digest));
    });
  }

  // ---- Ingester ----

  async writer(ctx: Context, opts: WriterOptions): Promise<LocalWriter> {
    checkSignal(ctx);
    const ref = validateRef(opts?.ref);
    const desc = opts.desc ?? {};
    let expected: Digest = '';
    let algorithm: ParsedDigest['algorithm'] = 'sha256';
    if (desc.digest) {
      algorithm = parseDigest(desc.digest).algorithm;
      expected = desc.digest;
    }
    const total = desc.size ?? 0;
    if (!Number.isSafeInteger(total) || total < 0) {
      throw new InvalidArgumentError(`invalid size ${total} for ref ${ref}: must be a non-negative integer`);
    }

    const lock = tryLock<LocalWriter>(this.root, ref);
    let fh: FileHandle | undefined;
    try {
      await lock.settled;
      if (expected && (await exists(this.blobPath(expected)))) {
        throw new AlreadyExistsError(`content ${expected}: already exists`);
      }
      const dir = this.ingestDir(ref);
      let found = await readIngest(dir);
      if (found) {
        let storedAlgorithm: ParsedDigest['algorithm'] | undefined;
        try {
          storedAlgorithm = found.expected ? parseDigest(found.expected).algorithm : undefined;
        } catch {
          found = undefined; // a corrupt expected file: the ingest is not trustworthy
        }
        // Data meant for other content is useless for this one: start over rather than fail.
        const conflict =
          found !== undefined &&
          (found.ref !== ref ||
            (total > 0 && found.total > 0 && total !== found.total) ||
            (expected !== '' && found.expected !== '' && expected !== found.expected));
        if (conflict) found = undefined;
        else if (storedAlgorithm) algorithm = storedAlgorithm;
      }

      let w: LocalWriter;
      if (found) {
        fh = await open(join(dir, INGEST_FILES.data), 'r+');
        const offset = (await fh.stat()).size;
        const hash = await hashFile(fh, offset, algorithm);
        try {
          if (found.total === 0 && total > 0) await writeFile(join(dir, INGEST_FILES.total), String(total));
          if (found.expected === '' && expected) await writeFile(join(dir, INGEST_FILES.expected), expected);
        } catch (e) {
          throw noSpaceError(e, dir, `ingest ref ${JSON.stringify(ref)}`);
        }
        w = new LocalWriter(this.host, {
          ref,
          dir,
          fh,
          offset,
          total: found.total || total,
          expected: found.expected || expected,
          algorithm,
          hash,
          startedAt: found.startedAt,
          updatedAt: found.updatedAt,
        });
      } else {
        await rm(dir, { recursive: true, force: true });
        const startedAt = await this.createIngest(dir, ref, total, expected);
        fh = await open(join(dir, INGEST_FILES.data), 'r+');
        w = new LocalWriter(this.host, {
          ref,
          dir,
          fh,
          offset: 0,
          total,
          expected,
          algorithm,
          hash: createHash(algorithm),
          startedAt,
          updatedAt: startedAt,
        });
      }
      lock.writer = w;
      return w;
    } catch (e) {
      await fh?.close().catch(() => {});
      unlock(this.root, ref, lock);
      throw e;
    }
  }

  /** Assembles a new ingest under a temp name and renames it into place. */
  private async createIngest(dir: string, ref: string, total: number, expected: Digest): Promise<Date> {
    const tmp = join(this.ingestRoot, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(tmp);
    } catch (e) {
      throw noSpaceError(e, tmp, `ingest ref ${JSON.stringify(ref)}`);
    }
    try {
      const startedAt = preciseNow();
      const stamp = formatRFC3339Nano(startedAt);
      const files: Promise<void>[] = [
        writeFile(join(tmp, INGEST_FILES.ref), ref),
        writeFile(join(tmp, INGEST_FILES.startedAt), stamp),
        writeFile(join(tmp, INGEST_FILES.updatedAt), stamp),
        writeFile(join(tmp, INGEST_FILES.data), ''),
      ];
      if (total > 0) files.push(writeFile(join(tmp, INGEST_FILES.total), String(total)));
      if (expected) files.push(writeFile(join(tmp, INGEST_FILES.expected), expected));
      await Promise.all(files);
      try {
        await rename(tmp, dir);
      } catch (e) {
        if (isErrno(e, 'ENOTEMPTY') || isErrno(e, 'EEXIST')) {
          throw new UnavailableError(`ref ${ref} is being written by another process`, { cause: e });
        }
        throw e;
      }
      return startedAt;
    } catch (e) {
      // A half-built ingest never shows: it lives under a temp name until complete.
      await rm(tmp, { recursive: true, force: true });
      throw noSpaceError(e, tmp, `ingest ref ${JSON.stringify(ref)}`);
    }
  }

  /**
   * Makes a verified ingest visible. Serialized per digest so that, in this process, of two
   * commits of the same content one wins and the other sees AlreadyExists.
   */
  private publish(w: LocalWriter, digest: Digest, labels: Labels | undefined): Promise<void> {
    return this.serialize(digest, async () => {
      try {
        await this.publishLocked(w, digest, labels);
      } catch (e) {
        throw noSpaceError(e, this.blobPath(digest), `commit of ingest ref ${JSON.stringify(w.ref)}`);
      }
    });
  }

  private async publishLocked(w: LocalWriter, digest: Digest, labels: Labels | undefined): Promise<void> {
    const target = this.blobPath(digest);
    if (await exists(target)) throw new AlreadyExistsError(`content ${digest}: already exists`);
    const blobDir = dirname(target);
    await mkdir(blobDir, { recursive: true });
    // The blob's mtime is its creation time. utimes takes seconds as a double (about
    // 240 ns steps today), so what the file holds, read back, is the time everyone sees.
    const seconds = Number(nowNanos()) / 1e9;
    await w.handle.utimes(seconds, seconds);
    const now = new NanoDate((await w.handle.stat({ bigint: true })).mtimeNs);
    await rename(w.dataPath, target);
    // Read-only from here on: some protection against accidental writes, as containerd.
    await w.handle.chmod(0o444).catch(() => {});
    if (this.keepLabels) {
      if (labels) await this.writeLabels(digest, labels, now);
      else await unlinkIfExists(this.labelsPath(digest)); // left by an earlier incarnation
    }
    await syncDir(blobDir);
  }

  // ---- IngestManager ----

  async status(ctx: Context, ref: string): Promise<IngestStatus> {
    checkSignal(ctx);
    validateRef(ref);
    const live = lockHolder<LocalWriter>(this.root, ref)?.writer;
    if (live) return live.snapshot();
    await settled(this.root, ref);
    const st = await readIngest(this.ingestDir(ref));
    if (!st || st.ref !== ref) throw new NotFoundError(`ingest ref ${JSON.stringify(ref)}: not found`);
    return st;
  }

  async listStatuses(ctx: Context, filters?: string[]): Promise<IngestStatus[]> {
    checkSignal(ctx);
    const filter = parseFilters(filters);
    const names = (await readdir(this.ingestRoot)).filter((n) => !n.startsWith(TMP_PREFIX)).sort();
    const found = await Promise.all(names.map((n) => readIngest(join(this.ingestRoot, n))));
    const out: IngestStatus[] = [];
    for (const st of found) {
      if (!st) continue; // finished or aborted while we listed
      const current = lockHolder<LocalWriter>(this.root, st.ref)?.writer?.snapshot() ?? st;
      if (filter.match((fp) => (fp.length === 1 && fp[0] === 'ref' ? current.ref : undefined)))
        out.push(current);
    }
    return out;
  }

  async abort(ctx: Context, ref: string): Promise<void> {
    checkSignal(ctx);
    validateRef(ref);
    const held = lockHolder<LocalWriter>(this.root, ref);
    if (held?.writer) {
      await held.writer.abort();
      return;
    }
    // Hold the ref while removing so no writer resumes the ingest under our feet.
    const lock = tryLock<LocalWriter>(this.root, ref);
    try {
      await lock.settled;
      const dir = this.ingestDir(ref);
      const st = await readIngest(dir);
      // A half-made directory (no ref or data yet) is debris of this ref: abort clears it.
      if (st ? st.ref !== ref : !(await exists(dir))) {
        throw new NotFoundError(`ingest ref ${JSON.stringify(ref)}: not found`);
      }
      await rm(dir, { recursive: true, force: true });
    } finally {
      unlock(this.root, ref, lock);
    }
  }
}

/** Opens (creating when needed) a local content store rooted at a directory. */
export function openLocalStore(rootOrOptions: string | LocalStoreOptions): Promise<LocalStore> {
  const opts = typeof rootOrOptions === 'string' ? { root: rootOrOptions } : rootOrOptions;
  return LocalStore.open(opts);
}
