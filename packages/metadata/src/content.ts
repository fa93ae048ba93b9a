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
  isAlreadyExists,
  isNoSpace,
  isNotFound,
  isUnavailable,
  type Labels,
  labelField,
  NoSpaceError,
  NotFoundError,
  nowNanos,
  parseFilters,
  preciseNow,
  type ReaderAt,
  requireNamespace,
  toNanos,
  validateDigest,
  validateLabels,
  type WalkFunc,
  type Writer,
  type WriterOptions,
} from '@berth/api';
import type { MetadataDB } from './db';
import { GC_ROOT_LABEL, type GCNode, type GCReport, labelReferences, type ResourceKind } from './gc';
import { groupLabels } from './label-rows';
import { addToContextLease, removeFromContextLease, requireLease } from './leases';
import { nsColumn, nsDate } from './time';

interface ContentRow {
  digest: string;
  size: number;
  created_at: string;
  updated_at: string;
}

interface IngestRow {
  seq: number;
  ref: string;
  backing_ref: string;
  expected: string | null;
  shared: number;
  created_at: string;
}

const INGEST_COLUMNS = `seq, ref, backing_ref, expected, shared, ${nsColumn('created_at')}`;
const CONTENT_COLUMNS = `digest, size, ${nsColumn('created_at')}, ${nsColumn('updated_at')}`;

const COPY_CHUNK = 1 << 20;

/**
 * (namespace, digest) pairs known to be committed, per database. containerd's clients
 * read a blob with one Read call per 32 KiB, so readerAt answers from here rather than
 * with a query per call. Only positive answers are kept; every statement in this file
 * that deletes content rows forgets the pair first (a forgotten pair only costs a query).
 */
const presentByDb = new WeakMap<MetadataDB, Set<string>>();
const PRESENT_MAX = 4096;

function presentSet(db: MetadataDB): Set<string> {
  let set = presentByDb.get(db);
  if (!set) {
    set = new Set();
    presentByDb.set(db, set);
  }
  return set;
}

const presentKey = (ns: string, digest: string) => `${ns}\n${digest}`;

function forgetPresent(db: MetadataDB, ns: string, digest: string): void {
  presentByDb.get(db)?.delete(presentKey(ns, digest));
}

/**
 * A per-namespace view over a backing content store, as containerd's metadata content
 * store: a namespace sees the blobs it committed, its ingests under its own refs (kept
 * as `<namespace>/<seq>/<ref>` in the backing store) and labels kept here in SQLite.
 */
export class MetadataContentStore implements ContentStore {
  constructor(
    private readonly db: MetadataDB,
    readonly backing: ContentStore,
  ) {}

  async info(ctx: Context, digest: Digest): Promise<ContentInfo> {
    const ns = requireNamespace(ctx);
    validateDigest(digest);
    const info = this.db.view(() => this.readInfo(ns, digest));
    if (!info) throw notFound(digest);
    return info;
  }

  async update(
    ctx: Context,
    info: Pick<ContentInfo, 'digest' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<ContentInfo> {
    const ns = requireNamespace(ctx);
    validateDigest(info.digest);
    for (const path of fieldpaths) {
      if (path !== 'labels' && !path.startsWith('labels.')) {
        throw new InvalidArgumentError(`cannot update "${path}" field on content info ${info.digest}`);
      }
    }
    return this.db.transaction(`content label update ${info.digest}`, () => {
      const current = this.readInfo(ns, info.digest);
      if (!current) throw notFound(info.digest);
      const labels = applyLabelPaths(current.labels, info.labels ?? {}, fieldpaths) ?? current.labels;
      validateLabels(labels);
      const updatedAt = preciseNow();
      this.writeLabels(ns, info.digest, labels);
      this.db
        .stmt('UPDATE content SET updated_at = ? WHERE namespace = ? AND digest = ?')
        .run(updatedAt.toNanos(), ns, info.digest);
      return { ...current, labels, updatedAt };
    });
  }

  /** Filters on `digest`, `size` and `labels.<key>`. */
  async walk(ctx: Context, fn: WalkFunc, filters?: string[]): Promise<void> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const infos = this.db.view(() => {
      const rows = this.db
        .stmt(`SELECT ${CONTENT_COLUMNS} FROM content WHERE namespace = ? ORDER BY digest`)
        .all(ns) as ContentRow[];
      const labelRows = this.db
        .stmt('SELECT digest, key, value FROM content_labels WHERE namespace = ?')
        .all(ns) as { digest: string; key: string; value: string }[];
      const labels = groupLabels(labelRows, (l) => l.digest);
      return rows.map((r) => toInfo(r, labels.get(r.digest) ?? {}));
    });
    for (const info of infos) {
      const matches = filter.match((path) => {
        switch (path[0]) {
          case 'digest':
            return info.digest;
          case 'size':
            return String(info.size);
          case 'labels':
            return labelField(info.labels, path);
          default:
            return undefined;
        }
      });
      if (matches) await fn(info);
    }
  }

  /** Removes the blob from this namespace; GC frees the bytes once no namespace has it. */
  async delete(ctx: Context, digest: Digest): Promise<void> {
    const ns = requireNamespace(ctx);
    validateDigest(digest);
    forgetPresent(this.db, ns, digest);
    this.db.transaction(`content delete ${digest}`, () => {
      const r = this.db.stmt('DELETE FROM content WHERE namespace = ? AND digest = ?').run(ns, digest);
      if (r.changes === 0) throw notFound(digest);
      removeFromContextLease(this.db, ctx, ns, 'content', digest);
      this.db.markDirty();
    });
  }

  async readerAt(ctx: Context, desc: Pick<Descriptor, 'digest'> & Partial<Descriptor>): Promise<ReaderAt> {
    const ns = requireNamespace(ctx);
    validateDigest(desc.digest);
    const present = presentSet(this.db);
    const key = presentKey(ns, desc.digest);
    if (!present.has(key)) {
      if (!this.has(ns, desc.digest)) throw notFound(desc.digest);
      if (present.size >= PRESENT_MAX) present.clear();
      present.add(key);
    }
    return this.backing.readerAt(ctx, desc);
  }

  async status(ctx: Context, ref: string): Promise<IngestStatus> {
    const ns = requireNamespace(ctx);
    const row = this.ingest(ns, ref);
    if (!row) throw new NotFoundError(`reference ${ref}: not found`);
    const st = await this.backingStatus(ctx, row);
    if (!st) throw new NotFoundError(`reference ${ref}: not found`);
    return st;
  }

  /** Filters on `ref`. */
  async listStatuses(ctx: Context, filters?: string[]): Promise<IngestStatus[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const rows = this.db
      .stmt(`SELECT ${INGEST_COLUMNS} FROM ingests WHERE namespace = ? ORDER BY ref`)
      .all(ns) as IngestRow[];
    const out: IngestStatus[] = [];
    for (const row of rows) {
      const st = await this.backingStatus(ctx, row);
      if (st && filter.match((path) => (path[0] === 'ref' ? st.ref : undefined))) out.push(st);
    }
    return out;
  }

  async abort(ctx: Context, ref: string): Promise<void> {
    const ns = requireNamespace(ctx);
    await this.db.gcLock.shared(async () => {
      const row = this.ingest(ns, ref);
      if (!row) throw new NotFoundError(`reference ${ref}: not found`);
      try {
        await this.backing.abort(ctx, row.backing_ref);
      } catch (e) {
        // A shared ingest may never have opened a backing ingest.
        if (!isNotFound(e)) throw e;
      }
      this.db.transaction(`ingest abort ${JSON.stringify(ref)}`, () => {
        this.db.stmt('DELETE FROM ingests WHERE seq = ?').run(row.seq);
        removeFromContextLease(this.db, ctx, ns, 'ingests', ref);
        // The ingest may have been what kept a shared blob alive.
        this.db.markDirty();
      });
    });
  }

  async writer(ctx: Context, opts: WriterOptions): Promise<Writer> {
    if (!opts?.ref) throw new InvalidArgumentError('ref must not be empty');
    const ns = requireNamespace(ctx);
    const desc = { ...opts.desc };
    if (desc.digest !== undefined) validateDigest(desc.digest);
    if (desc.size !== undefined && (!Number.isSafeInteger(desc.size) || desc.size < 0)) {
      throw new InvalidArgumentError(`invalid size ${desc.size} for ref ${opts.ref}`);
    }
    const ref = opts.ref;

    return this.db.gcLock.shared(async () => {
      const outcome = this.db.transaction(`ingest open ${JSON.stringify(opts.ref)}`, () => {
        if (desc.digest && this.has(ns, desc.digest)) {
          // Lease it all the same, so a lease the client holds protects what it found.
          addToContextLease(this.db, ctx, ns, 'content', desc.digest);
          return { exists: true as const };
        }
        this.db.ensureNamespace(ns);
        const shared = desc.digest !== undefined && this.sharedSize(desc.digest, desc.size) !== undefined;
        if (shared) desc.size = this.sharedSize(desc.digest!, desc.size);
        const now = nowNanos();
        let row = this.ingest(ns, ref);
        const created = !row;
        if (!row) {
          const r = this.db
            .stmt(
              "INSERT INTO ingests (namespace, ref, backing_ref, created_at) VALUES (?, ?, '', ?) RETURNING seq",
            )
            .get(ns, ref, now) as { seq: number };
          const backingRef = `${ns}/${r.seq}/${ref}`;
          this.db.stmt('UPDATE ingests SET backing_ref = ? WHERE seq = ?').run(backingRef, r.seq);
          row = {
            seq: r.seq,
            ref,
            backing_ref: backingRef,
            expected: null,
            shared: 0,
            created_at: String(now),
          };
        }
        const leased = addToContextLease(this.db, ctx, ns, 'ingests', ref);
        // Unleased ingests expire, so an abandoned one is collected eventually.
        if (!leased) {
          this.db
            .stmt('UPDATE ingests SET expires_at = ? WHERE seq = ?')
            .run(now + BigInt(this.db.ingestExpiryMs) * 1_000_000n, row.seq);
        }
        row.expected = desc.digest ?? null;
        row.shared = shared ? 1 : 0;
        this.db
          .stmt('UPDATE ingests SET expected = ?, shared = ? WHERE seq = ?')
          .run(row.expected, row.shared, row.seq);
        return { exists: false as const, row, created };
      });
      if (outcome.exists) throw new AlreadyExistsError(`content ${desc.digest}: already exists`);

      const { row, created } = outcome;
      let backingWriter: Writer | undefined;
      if (!row.shared) {
        try {
          // The digest stays here: the backing store refuses a writer for a blob it has,
          // yet this namespace must still write (or share) a blob to see it.
          backingWriter = await this.backing.writer(ctx, {
            ref: row.backing_ref,
            desc: { ...desc, digest: undefined },
          });
        } catch (e) {
          // Nothing half-made stays: drop the record this call created.
          if (created) {
            this.db.transaction(`ingest open ${JSON.stringify(opts.ref)} (undo)`, () => {
              this.db.stmt('DELETE FROM ingests WHERE seq = ?').run(row.seq);
              removeFromContextLease(this.db, ctx, ns, 'ingests', ref);
            });
          }
          throw e;
        }
      }
      return new NamespacedWriter(this.db, this.backing, ctx, ns, ref, row.backing_ref, desc, backingWriter);
    });
  }

  /**
   * Shared policy: a blob another namespace holds needs no bytes from this client, only
   * a commit (the ingest record keeps it from GC meanwhile). Returns its size, or
   * undefined when the blob is not shareable: isolated policy, a size that differs, or
   * no namespace holding it (a blob on its way out is written afresh).
   */
  private sharedSize(digest: Digest, size: number | undefined): number | undefined {
    if (this.db.contentSharing !== 'shared') return undefined;
    const other = this.db.stmt('SELECT size FROM content WHERE digest = ? LIMIT 1').get(digest) as
      | { size: number }
      | undefined;
    return other && (!size || size === other.size) ? other.size : undefined;
  }

  /** Whether `namespace` has committed `digest`. */
  has(namespace: string, digest: Digest): boolean {
    return !!this.db.stmt('SELECT 1 FROM content WHERE namespace = ? AND digest = ?').get(namespace, digest);
  }

  private ingest(ns: string, ref: string): IngestRow | undefined {
    return this.db
      .stmt(`SELECT ${INGEST_COLUMNS} FROM ingests WHERE namespace = ? AND ref = ?`)
      .get(ns, ref) as IngestRow | undefined;
  }

  /** The backing ingest's status under the client's ref; for a shared ingest, the blob's. */
  private async backingStatus(ctx: Context, row: IngestRow): Promise<IngestStatus | undefined> {
    try {
      const st = await this.backing.status(ctx, row.backing_ref);
      return { ...st, ref: row.ref, expected: row.expected ?? st.expected };
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (!row.shared || !row.expected) return undefined;
    try {
      const info = await this.backing.info(ctx, row.expected);
      const at = nsDate(row.created_at);
      return {
        ref: row.ref,
        offset: info.size,
        total: info.size,
        expected: row.expected,
        startedAt: at,
        updatedAt: at,
      };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  private readInfo(ns: string, digest: Digest): ContentInfo | undefined {
    const row = this.db
      .stmt(`SELECT ${CONTENT_COLUMNS} FROM content WHERE namespace = ? AND digest = ?`)
      .get(ns, digest) as ContentRow | undefined;
    if (!row) return undefined;
    const labels = this.db
      .stmt('SELECT key, value FROM content_labels WHERE namespace = ? AND digest = ?')
      .all(ns, digest) as { key: string; value: string }[];
    return toInfo(row, Object.fromEntries(labels.map((l) => [l.key, l.value])));
  }

  private writeLabels(ns: string, digest: Digest, labels: Labels): void {
    this.db.stmt('DELETE FROM content_labels WHERE namespace = ? AND digest = ?').run(ns, digest);
    const put = this.db.stmt(
      'INSERT INTO content_labels (namespace, digest, key, value) VALUES (?, ?, ?, ?)',
    );
    for (const [k, v] of Object.entries(labels)) if (v !== '') put.run(ns, digest, k, v);
  }
}

/**
 * The writer a namespace holds. With no backing writer (a shared blob), the ingest is
 * already complete at the blob's size; a write appends after it (copying the blob into a
 * backing ingest first), a truncate restarts from a prefix of it, as containerd.
 */
class NamespacedWriter implements Writer {
  private readonly startedAt = preciseNow();
  private committed = false;

  constructor(
    private readonly db: MetadataDB,
    private readonly backing: ContentStore,
    private readonly ctx: Context,
    private readonly namespace: string,
    readonly ref: string,
    private readonly backingRef: string,
    private readonly desc: Partial<Descriptor>,
    private w: Writer | undefined,
  ) {}

  async write(data: Buffer): Promise<void> {
    this.checkOpen();
    if (!this.w) {
      if (data.length === 0) return;
      await this.createAndCopy(this.desc.size ?? 0);
    }
    try {
      await this.w!.write(data);
    } catch (e) {
      throw this.clientsRef(e);
    }
  }

  /** A full disk named with the client's ref, not the backing `<namespace>/<seq>/<ref>`. */
  private clientsRef(e: unknown): unknown {
    if (!isNoSpace(e)) return e;
    const message = e.message.split(JSON.stringify(this.backingRef)).join(JSON.stringify(this.ref));
    return new NoSpaceError(e.path, message, { cause: e.cause });
  }

  digest(): Digest {
    return this.w ? this.w.digest() : this.desc.digest!;
  }

  async status(): Promise<IngestStatus> {
    if (this.w) {
      const st = await this.w.status();
      return { ...st, ref: this.ref, expected: this.desc.digest ?? st.expected };
    }
    const size = this.desc.size ?? 0;
    return {
      ref: this.ref,
      offset: size,
      total: size,
      expected: this.desc.digest!,
      startedAt: this.startedAt,
      updatedAt: this.startedAt,
    };
  }

  async truncate(size: number): Promise<void> {
    this.checkOpen();
    if (this.w) return this.w.truncate(size);
    await this.createAndCopy(size);
  }

  async commit(size: number, expected?: Digest, opts: CommitOptions = {}): Promise<void> {
    this.checkOpen();
    validateLabels(opts.labels);
    if (expected !== undefined) validateDigest(expected);
    // The descriptor given at open is checked too (our Writer contract), not only commit's.
    const want = expected ?? this.desc.digest;
    const ns = this.namespace;
    await this.db.gcLock.shared(async () => {
      // Fail before the backing commit consumes the ingest: when the ingest was aborted
      // (or collected) meanwhile, or the lease is already gone.
      this.db.view(() => {
        const row = this.db
          .stmt('SELECT 1 FROM ingests WHERE namespace = ? AND ref = ? AND backing_ref = ?')
          .get(ns, this.ref, this.backingRef);
        if (!row) throw new NotFoundError(`ref ${this.ref}: not found (aborted)`);
        if (this.ctx.lease) requireLease(this.db, ns, this.ctx.lease);
      });
      let actual: Digest;
      let finalSize: number;
      if (!this.w) {
        const have = this.desc.size ?? 0;
        if (size > 0 && size !== have) {
          throw new FailedPreconditionError(`"${this.ref}" failed size validation: ${have} != ${size}`);
        }
        if (want && want !== this.desc.digest) {
          throw new FailedPreconditionError(
            `"${this.ref}" unexpected commit digest ${this.desc.digest}, expected ${want}`,
          );
        }
        actual = this.desc.digest!;
        finalSize = have;
      } else {
        const st = await this.w.status();
        if (size > 0 && size !== st.offset) {
          throw new FailedPreconditionError(`"${this.ref}" failed size validation: ${st.offset} != ${size}`);
        }
        finalSize = st.offset;
        actual = this.w.digest();
        try {
          await this.w.commit(finalSize, want);
        } catch (e) {
          // Another namespace (or an earlier crash) left the same bytes: fine, record them here.
          if (!isAlreadyExists(e)) throw this.clientsRef(e);
        }
      }
      const exists = this.db.transaction(
        `content commit ${actual} (ingest ${JSON.stringify(this.ref)})`,
        () => {
          this.db.ensureNamespace(ns);
          this.db.stmt('DELETE FROM ingests WHERE namespace = ? AND ref = ?').run(ns, this.ref);
          removeFromContextLease(this.db, this.ctx, ns, 'ingests', this.ref);
          const now = nowNanos();
          const r = this.db
            .stmt(
              'INSERT OR IGNORE INTO content (namespace, digest, size, created_at, updated_at) VALUES (?, ?, ?, ?, ?)',
            )
            .run(ns, actual, finalSize, now, now);
          if (r.changes > 0) {
            const put = this.db.stmt(
              'INSERT INTO content_labels (namespace, digest, key, value) VALUES (?, ?, ?, ?)',
            );
            for (const [k, v] of Object.entries(opts.labels ?? {})) if (v !== '') put.run(ns, actual, k, v);
          }
          addToContextLease(this.db, this.ctx, ns, 'content', actual);
          return r.changes === 0;
        },
      );
      this.committed = true;
      if (exists) throw new AlreadyExistsError(`content ${actual}: already exists`);
    });
  }

  private checkOpen(): void {
    if (this.committed) throw new FailedPreconditionError(`ref ${this.ref}: already committed`);
  }

  async close(): Promise<void> {
    await this.w?.close();
  }

  /** Opens the backing ingest and fills it with the first `size` bytes of the shared blob. */
  private async createAndCopy(size: number): Promise<void> {
    const w = await this.backing.writer(this.ctx, {
      ref: this.backingRef,
      desc: { ...this.desc, size: undefined, digest: undefined },
    });
    try {
      if (size > 0) {
        const ra = await this.backing.readerAt(this.ctx, { digest: this.desc.digest! });
        try {
          for (let off = 0; off < size; ) {
            const chunk = await ra.readAt(off, Math.min(COPY_CHUNK, size - off));
            if (chunk.length === 0) {
              throw new FailedPreconditionError(
                `content ${this.desc.digest}: short read at ${off} of ${size}`,
              );
            }
            await w.write(chunk);
            off += chunk.length;
          }
        } finally {
          await ra.close();
        }
      }
    } catch (e) {
      await w.close();
      throw e;
    }
    this.w = w;
  }
}

function toInfo(row: ContentRow, labels: Labels): ContentInfo {
  return {
    digest: row.digest,
    size: row.size,
    createdAt: nsDate(row.created_at),
    updatedAt: nsDate(row.updated_at),
    labels,
  };
}

function notFound(digest: Digest): NotFoundError {
  return new NotFoundError(`content digest ${digest}: not found`);
}

/**
 * Content and ingests for the collector. Content labelled `containerd.io/gc.root` is a
 * root and follows `containerd.io/gc.ref.*` labels; an unexpired ingest is a root and
 * keeps its shared blob. Cleanup deletes backing blobs no namespace has and aborts
 * backing ingests no record holds.
 */
export function contentKinds(db: MetadataDB, backing: ContentStore | undefined): ResourceKind[] {
  const content: ResourceKind = {
    type: 'content',
    // containerd's word for content in this message.
    inUse: (ns) =>
      db.stmt('SELECT 1 FROM content WHERE namespace = ? LIMIT 1').get(ns) ? 'blobs' : undefined,
    roots: () =>
      (
        db.stmt('SELECT namespace, digest FROM content_labels WHERE key = ?').all(GC_ROOT_LABEL) as {
          namespace: string;
          digest: string;
        }[]
      ).map((r): GCNode => ({ type: 'content', namespace: r.namespace, id: r.digest })),
    references(node) {
      const rows = db
        .stmt(
          "SELECT key, value FROM content_labels WHERE namespace = ? AND digest = ? AND key LIKE 'containerd.io/gc.ref.%'",
        )
        .all(node.namespace, node.id) as { key: string; value: string }[];
      return labelReferences(
        node.namespace,
        rows.map((r) => [r.key, r.value]),
      );
    },
    all: () =>
      (db.stmt('SELECT namespace, digest FROM content').all() as { namespace: string; digest: string }[]).map(
        (r): GCNode => ({ type: 'content', namespace: r.namespace, id: r.digest }),
      ),
    remove(node) {
      forgetPresent(db, node.namespace, node.id);
      db.stmt('DELETE FROM content WHERE namespace = ? AND digest = ?').run(node.namespace, node.id);
    },
    async cleanup(report: GCReport) {
      if (!backing) return;
      const kept = new Set(
        (
          db.stmt('SELECT digest FROM content UNION SELECT expected FROM ingests WHERE shared = 1').all() as {
            digest: string;
          }[]
        ).map((r) => r.digest),
      );
      const doomed: ContentInfo[] = [];
      await backing.walk({}, (info) => {
        if (!kept.has(info.digest)) doomed.push(info);
      });
      for (const info of doomed) {
        try {
          await backing.delete({}, info.digest);
        } catch (e) {
          if (isNotFound(e)) continue;
          throw e;
        }
        report.removed.push({ type: 'content', id: info.digest });
        report.bytes += info.size;
      }
    },
  };

  const ingests: ResourceKind = {
    type: 'ingests',
    dropNamespace: (ns) => {
      // The backing ingest is aborted by the next collection, as a stray.
      db.stmt('DELETE FROM ingests WHERE namespace = ?').run(ns);
    },
    roots: (now) =>
      (
        db.stmt('SELECT namespace, ref FROM ingests WHERE expires_at > ?').all(toNanos(now)) as {
          namespace: string;
          ref: string;
        }[]
      ).map((r): GCNode => ({ type: 'ingests', namespace: r.namespace, id: r.ref })),
    references(node) {
      const row = db
        .stmt('SELECT expected FROM ingests WHERE namespace = ? AND ref = ? AND shared = 1')
        .get(node.namespace, node.id) as { expected: string | null } | undefined;
      return row?.expected ? [{ type: 'content', namespace: node.namespace, id: row.expected }] : [];
    },
    all: () =>
      (db.stmt('SELECT namespace, ref FROM ingests').all() as { namespace: string; ref: string }[]).map(
        (r): GCNode => ({ type: 'ingests', namespace: r.namespace, id: r.ref }),
      ),
    remove(node) {
      db.stmt('DELETE FROM ingests WHERE namespace = ? AND ref = ?').run(node.namespace, node.id);
    },
    async cleanup(report: GCReport) {
      if (!backing) return;
      const held = new Set(
        (db.stmt('SELECT backing_ref FROM ingests').all() as { backing_ref: string }[]).map(
          (r) => r.backing_ref,
        ),
      );
      for (const st of await backing.listStatuses({})) {
        if (held.has(st.ref)) continue;
        try {
          await backing.abort({}, st.ref);
        } catch (e) {
          // Gone already, or a writer still holds it: the next collection retries.
          if (isNotFound(e) || isUnavailable(e)) continue;
          throw e;
        }
        report.removed.push({ type: 'ingests', id: st.ref });
      }
    },
  };

  return [content, ingests];
}
