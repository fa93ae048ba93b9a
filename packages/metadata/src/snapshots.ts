import {
  AlreadyExistsError,
  type BerthError,
  type Context,
  FailedPreconditionError,
  InvalidArgumentError,
  isAlreadyExists,
  isFailedPrecondition,
  isNotFound,
  isSnapshotCleaner,
  isUnavailable,
  type Labels,
  type Mount,
  NotFoundError,
  nowNanos,
  parseFilters,
  requireNamespace,
  type SnapshotInfo,
  type SnapshotOptions,
  type Snapshotter,
  type SnapshotUsage,
  type SnapshotWalkFunc,
  snapshotField,
  toNanos,
  UnknownError,
  validateLabels,
} from '@berth/api';
import type { MetadataDB } from './db';
import { GC_ROOT_LABEL, type GCNode, type GCReport, labelReferences, type ResourceKind } from './gc';
import { groupLabels } from './label-rows';
import { addToContextLease, removeFromContextLease } from './leases';
import { nsColumn, nsDate } from './time';

/** Labels with this prefix are handed down to the backing snapshotter (containerd's rule). */
export const INHERITED_LABEL_PREFIX = 'containerd.io/snapshot/';
/**
 * A snapshot label naming the committed snapshot a Prepare is meant to produce: a remote
 * snapshotter that already has it answers AlreadyExists and the metadata records that one.
 */
export const SNAPSHOT_REF_LABEL = 'containerd.io/snapshot.ref';

interface SnapshotRow {
  id: number;
  key: string;
  backing_key: string;
  parent: string | null;
  created_at: string;
  updated_at: string;
}

const ROW_COLUMNS =
  `s.id, s.key, s.backing_key, p.key AS parent, ${nsColumn('s.created_at')}, ${nsColumn('s.updated_at')} ` +
  'FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id';

/** The labels a backing snapshotter sees: only `containerd.io/snapshot/…` ones. */
export function inheritedLabels(labels: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels ?? {})) if (k.startsWith(INHERITED_LABEL_PREFIX)) out[k] = v;
  return out;
}

/** The snapshot's own info over what the backing snapshotter reports (kind, inherited labels). */
function overlayInfo(backing: SnapshotInfo, row: SnapshotRow, labels: Labels): SnapshotInfo {
  return {
    kind: backing.kind,
    name: row.key,
    parent: row.parent ?? '',
    labels: { ...backing.labels, ...labels },
    createdAt: nsDate(row.created_at),
    updatedAt: nsDate(row.updated_at),
  };
}

function notExist(key: string): NotFoundError {
  return new NotFoundError(`snapshot ${key} does not exist: not found`);
}

function checkKey(what: string, key: string): void {
  if (typeof key !== 'string' || key === '')
    throw new InvalidArgumentError(`snapshot ${what} must not be empty`);
}

/**
 * One snapshotter as the namespaces see it, as containerd's metadata snapshotter: each
 * namespace has its own keys (kept as `<namespace>/<seq>/<key>` in the backing
 * snapshotter so they never collide), and parents, labels and times live here in SQLite.
 * Only `containerd.io/snapshot/…` labels reach the backing snapshotter. Removal forgets the
 * record; garbage collection removes what the backing snapshotter holds for it.
 */
export class MetadataSnapshotter implements Snapshotter {
  /** Set when a backing snapshot may have lost its record: the next collection cleans up. */
  dirty = true;

  constructor(
    private readonly db: MetadataDB,
    /** The snapshotter's name: `snapshots/<name>` in leases and GC. */
    readonly name: string,
    readonly backing: Snapshotter,
  ) {}

  /** The lease resource and GC node type of this snapshotter's snapshots. */
  get resourceType(): string {
    return `snapshots/${this.name}`;
  }

  async stat(ctx: Context, key: string): Promise<SnapshotInfo> {
    const ns = requireNamespace(ctx);
    const { row, labels } = this.db.view(() => {
      const row = this.row(ns, key);
      if (!row) throw notExist(key);
      return { row, labels: this.labels(row.id) };
    });
    return overlayInfo(await this.backing.stat(ctx, row.backing_key), row, labels);
  }

  async update(
    ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<SnapshotInfo> {
    const ns = requireNamespace(ctx);
    if (!info?.name) throw new InvalidArgumentError('snapshot name must not be empty: invalid argument');
    for (const path of fieldpaths) {
      if (path !== 'labels' && !path.startsWith('labels.')) {
        throw new InvalidArgumentError(
          `cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(info.name)}: invalid argument`,
        );
      }
    }
    const update = info.labels ?? {};
    const { row, labels } = this.db.view(() => {
      const row = this.row(ns, info.name);
      if (!row) throw notExist(info.name);
      return { row, labels: this.labels(row.id) };
    });
    let next: Labels;
    if (fieldpaths.length === 0) next = { ...update };
    else {
      next = { ...labels };
      for (const path of fieldpaths) {
        if (path === 'labels') next = { ...update };
        else {
          const k = path.slice('labels.'.length);
          if (update[k] === undefined || update[k] === '') delete next[k];
          else next[k] = update[k];
        }
      }
    }
    for (const [k, v] of Object.entries(next)) if (v === '') delete next[k];
    validateLabels(next);
    const backingInfo = await this.backing.update(
      ctx,
      { name: row.backing_key, labels: inheritedLabels(next) },
      fieldpaths,
    );
    const updatedAt = nowNanos();
    this.db.transaction(`snapshot update ${JSON.stringify(info.name)}`, () => {
      if (!this.db.stmt('SELECT 1 FROM snapshots WHERE id = ?').get(row.id)) throw notExist(info.name);
      this.writeLabels(row.id, next);
      this.db.stmt('UPDATE snapshots SET updated_at = ? WHERE id = ?').run(updatedAt, row.id);
    });
    return overlayInfo(backingInfo, { ...row, updated_at: String(updatedAt) }, next);
  }

  async usage(ctx: Context, key: string): Promise<SnapshotUsage> {
    return this.backing.usage(ctx, this.resolve(ctx, key));
  }

  async mounts(ctx: Context, key: string): Promise<Mount[]> {
    return this.backing.mounts(ctx, this.resolve(ctx, key));
  }

  prepare(ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    return this.create(ctx, key, parent, false, opts);
  }

  view(ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    return this.create(ctx, key, parent, true, opts);
  }

  private async create(
    ctx: Context,
    key: string,
    parent: string,
    readonly: boolean,
    opts: SnapshotOptions,
  ): Promise<Mount[]> {
    const ns = requireNamespace(ctx);
    checkKey('key', key);
    const labels = { ...(opts.labels ?? {}) };
    validateLabels(labels);
    const target = labels[SNAPSHOT_REF_LABEL] ?? '';

    // Shared with other writers, exclusive for GC: a backing snapshot is never collected
    // between its creation and its record.
    return this.db.gcLock.shared(async () => {
      const { backingKey, backingParent } = this.db.transaction(
        `snapshot prepare ${JSON.stringify(key)}`,
        () => {
          if (target !== '' && this.row(ns, target)) {
            throw new AlreadyExistsError(`target snapshot ${JSON.stringify(target)}: already exists`);
          }
          if (this.row(ns, key))
            throw new AlreadyExistsError(`snapshot ${JSON.stringify(key)}: already exists`);
          let backingParent = '';
          if (parent !== '') {
            const p = this.row(ns, parent);
            if (!p) throw new NotFoundError(`parent snapshot ${parent} does not exist: not found`);
            backingParent = p.backing_key;
          }
          return { backingKey: this.nextBackingKey(ns, key), backingParent };
        },
      );

      const backingOpts: SnapshotOptions = { labels: inheritedLabels(labels) };
      let mounts: Mount[] = [];
      let created: string | undefined;
      let recordKey = key;
      let recordBacking = backingKey;
      let recordBackingParent = backingParent;
      let createdAt = nowNanos();
      let updatedAt = createdAt;
      let existing: Error | undefined;
      try {
        mounts = readonly
          ? await this.backing.view(ctx, backingKey, backingParent, backingOpts)
          : await this.backing.prepare(ctx, backingKey, backingParent, backingOpts);
        created = backingKey;
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
        if (target === '') {
          throw new UnknownError(`unexpected error from snapshotter: ${(e as Error).message}: unknown`, {
            cause: e,
          });
        }
        // The backing snapshotter already has the target (a remote snapshotter): record it.
        const found = await this.findTarget(ctx, target, backingParent);
        if (!found)
          throw new NotFoundError(`target snapshot ${JSON.stringify(target)} in backend: not found`);
        recordKey = target;
        recordBacking = found.name;
        recordBackingParent = found.parent;
        createdAt = toNanos(found.createdAt);
        updatedAt = toNanos(found.updatedAt);
        for (const [k, v] of Object.entries(found.labels)) if (!(k in labels)) labels[k] = v;
        existing = new AlreadyExistsError(
          `target snapshot ${JSON.stringify(target)} from snapshotter: already exists`,
        );
      }

      try {
        this.db.transaction(`snapshot prepare ${JSON.stringify(key)}`, () => {
          this.db.ensureNamespace(ns);
          addToContextLease(this.db, ctx, ns, this.resourceType, recordKey);
          if (this.row(ns, recordKey)) {
            throw new AlreadyExistsError(`snapshot ${JSON.stringify(recordKey)}: already exists`);
          }
          let parentId: number | null = null;
          if (parent !== '') {
            const p = this.row(ns, parent);
            if (!p) throw new NotFoundError(`parent snapshot ${parent} does not exist: not found`);
            if (p.backing_key !== recordBackingParent) {
              throw new InvalidArgumentError(
                `mismatched parent ${parent} from target ${target}: invalid argument`,
              );
            }
            parentId = p.id;
          }
          const r = this.db
            .stmt(
              'INSERT INTO snapshots (namespace, snapshotter, key, backing_key, parent_id, created_at, updated_at) ' +
                'VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id',
            )
            .get(ns, this.name, recordKey, recordBacking, parentId, createdAt, updatedAt) as { id: number };
          this.writeLabels(r.id, labels);
        });
      } catch (e) {
        if (created !== undefined) await this.forget(ctx, created);
        throw e;
      }
      if (existing) throw existing;
      return mounts;
    });
  }

  /** The committed snapshot a remote snapshotter already had for `target` on `parent`. */
  private async findTarget(ctx: Context, target: string, parent: string): Promise<SnapshotInfo | undefined> {
    let found: SnapshotInfo | undefined;
    const filter = `labels."${SNAPSHOT_REF_LABEL}"==${target},parent==${JSON.stringify(parent)}`;
    await this.backing.walk(
      ctx,
      (info) => {
        // The filter may not be honoured: check again.
        if (found || info.kind !== 'committed') return;
        if (info.labels[SNAPSHOT_REF_LABEL] !== target || info.parent !== parent) return;
        found = info;
      },
      [filter],
    );
    return found;
  }

  /** Removes a backing snapshot whose record could not be written (best effort: GC retries). */
  private async forget(ctx: Context, backingKey: string): Promise<void> {
    try {
      await this.backing.remove(ctx, backingKey);
    } catch {
      this.dirty = true;
    }
  }

  async commit(ctx: Context, name: string, key: string, opts: SnapshotOptions = {}): Promise<void> {
    const ns = requireNamespace(ctx);
    checkKey('name', name);
    checkKey('key', key);
    const labels = { ...(opts.labels ?? {}) };
    validateLabels(labels);
    await this.db.gcLock.shared(async () => {
      const { row, committedKey } = this.db.transaction(`snapshot commit ${JSON.stringify(name)}`, () => {
        if (this.row(ns, name))
          throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)}: already exists`);
        const row = this.row(ns, key);
        if (!row) throw notExist(key);
        return { row, committedKey: this.nextBackingKey(ns, name) };
      });
      await this.backing.commit(ctx, committedKey, row.backing_key, { labels: inheritedLabels(labels) });
      try {
        this.db.transaction(`snapshot commit ${JSON.stringify(name)}`, () => {
          if (this.row(ns, name))
            throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)}: already exists`);
          const current = this.row(ns, key);
          if (!current || current.backing_key !== row.backing_key) throw notExist(key);
          const parentId = (
            this.db.stmt('SELECT parent_id FROM snapshots WHERE id = ?').get(current.id) as {
              parent_id: number | null;
            }
          ).parent_id;
          const now = nowNanos();
          this.db.ensureNamespace(ns);
          addToContextLease(this.db, ctx, ns, this.resourceType, name);
          // The active snapshot has no children (a parent must be committed), so it can go first.
          this.db.stmt('DELETE FROM snapshots WHERE id = ?').run(current.id);
          removeFromContextLease(this.db, ctx, ns, this.resourceType, key);
          const r = this.db
            .stmt(
              'INSERT INTO snapshots (namespace, snapshotter, key, backing_key, parent_id, created_at, updated_at) ' +
                'VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id',
            )
            .get(ns, this.name, name, committedKey, parentId, now, now) as { id: number };
          this.writeLabels(r.id, labels);
        });
      } catch (e) {
        // The backing commit happened but nothing records it: GC takes it.
        this.dirty = true;
        throw e;
      }
    });
  }

  /** Forgets the snapshot; its backing snapshot goes at the next garbage collection. */
  async remove(ctx: Context, key: string): Promise<void> {
    const ns = requireNamespace(ctx);
    this.db.transaction(`snapshot remove ${JSON.stringify(key)}`, () => {
      const row = this.row(ns, key);
      if (!row) throw notExist(key);
      if (this.db.stmt('SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1').get(row.id)) {
        throw new FailedPreconditionError('cannot remove snapshot with child: failed precondition');
      }
      this.db.stmt('DELETE FROM snapshots WHERE id = ?').run(row.id);
      removeFromContextLease(this.db, ctx, ns, this.resourceType, key);
      this.dirty = true;
      this.db.markDirty();
    });
  }

  /** In key order; filters on `kind`, `name`, `parent` and `labels.<key>`. */
  async walk(ctx: Context, fn: SnapshotWalkFunc, filters?: string[]): Promise<void> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const { rows, labels } = this.db.view(() => {
      const rows = this.db
        .stmt(`SELECT ${ROW_COLUMNS} WHERE s.namespace = ? AND s.snapshotter = ? ORDER BY s.key`)
        .all(ns, this.name) as SnapshotRow[];
      const labelRows = this.db
        .stmt(
          'SELECT l.snapshot_id, l.key, l.value FROM snapshot_labels l JOIN snapshots s ON s.id = l.snapshot_id ' +
            'WHERE s.namespace = ? AND s.snapshotter = ?',
        )
        .all(ns, this.name) as { snapshot_id: number; key: string; value: string }[];
      return { rows, labels: groupLabels(labelRows, (l) => String(l.snapshot_id)) };
    });
    for (const row of rows) {
      let backing: SnapshotInfo;
      try {
        backing = await this.backing.stat(ctx, row.backing_key);
      } catch (e) {
        if (isNotFound(e)) continue;
        throw e;
      }
      const info = overlayInfo(backing, row, labels.get(String(row.id)) ?? {});
      if (filter.match((path) => snapshotField(info, path))) await fn(info);
    }
  }

  async close(): Promise<void> {
    await this.backing.close();
  }

  /** The backing key of `key` in ctx's namespace; NotFound when there is none. */
  private resolve(ctx: Context, key: string): string {
    const ns = requireNamespace(ctx);
    const row = this.row(ns, key);
    if (!row) throw notExist(key);
    return row.backing_key;
  }

  private row(ns: string, key: string): SnapshotRow | undefined {
    return this.db
      .stmt(`SELECT ${ROW_COLUMNS} WHERE s.namespace = ? AND s.snapshotter = ? AND s.key = ?`)
      .get(ns, this.name, key) as SnapshotRow | undefined;
  }

  private labels(id: number): Labels {
    const rows = this.db.stmt('SELECT key, value FROM snapshot_labels WHERE snapshot_id = ?').all(id) as {
      key: string;
      value: string;
    }[];
    return Object.fromEntries(rows.map((r) => [r.key, r.value]));
  }

  private writeLabels(id: number, labels: Labels): void {
    this.db.stmt('DELETE FROM snapshot_labels WHERE snapshot_id = ?').run(id);
    const put = this.db.stmt('INSERT INTO snapshot_labels (snapshot_id, key, value) VALUES (?, ?, ?)');
    for (const [k, v] of Object.entries(labels)) if (v !== '') put.run(id, k, v);
  }

  /** `<namespace>/<seq>/<key>`: a backing key never used before. Call inside a transaction. */
  private nextBackingKey(ns: string, key: string): string {
    const r = this.db
      .stmt(
        'INSERT INTO snapshot_sequences (snapshotter, last) VALUES (?, 1) ' +
          'ON CONFLICT (snapshotter) DO UPDATE SET last = last + 1 RETURNING last',
      )
      .get(this.name) as { last: number };
    return `${ns}/${r.last}/${key}`;
  }

  /**
   * This snapshotter for the collector. Snapshots labelled `containerd.io/gc.root` are
   * roots; a snapshot keeps its parent and what its `containerd.io/gc.ref.*` labels name.
   * Cleanup removes backing snapshots no record holds, children first, then lets the
   * backing snapshotter reclaim space.
   */
  resourceKind(): ResourceKind {
    const db = this.db;
    const type = this.resourceType;
    const node = (r: { namespace: string; key: string }): GCNode => ({
      type,
      namespace: r.namespace,
      id: r.key,
    });
    return {
      type,
      inUse: (ns) =>
        db.stmt('SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? LIMIT 1').get(ns, this.name)
          ? `snapshots on ${JSON.stringify(this.name)} snapshotter`
          : undefined,
      roots: () =>
        (
          db
            .stmt(
              'SELECT s.namespace, s.key FROM snapshot_labels l JOIN snapshots s ON s.id = l.snapshot_id ' +
                'WHERE l.key = ? AND s.snapshotter = ?',
            )
            .all(GC_ROOT_LABEL, this.name) as { namespace: string; key: string }[]
        ).map(node),
      references: (n) => {
        const row = this.row(n.namespace, n.id);
        if (!row) return [];
        const out: GCNode[] = [];
        if (row.parent) out.push({ type, namespace: n.namespace, id: row.parent });
        const refs = db
          .stmt(
            "SELECT key, value FROM snapshot_labels WHERE snapshot_id = ? AND key LIKE 'containerd.io/gc.ref.%'",
          )
          .all(row.id) as { key: string; value: string }[];
        out.push(
          ...labelReferences(
            n.namespace,
            refs.map((r) => [r.key, r.value]),
          ),
        );
        return out;
      },
      // Children have higher ids than their parents: listing newest first removes them first.
      all: () =>
        (
          db
            .stmt('SELECT namespace, key FROM snapshots WHERE snapshotter = ? ORDER BY id DESC')
            .all(this.name) as { namespace: string; key: string }[]
        ).map(node),
      remove: (n) => {
        db.stmt('DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?').run(
          n.namespace,
          this.name,
          n.id,
        );
        this.dirty = true;
      },
      cleanup: (report) => this.cleanupBacking(report),
    };
  }

  /** Removes backing snapshots no record holds (leaves first), then runs the backing cleanup. */
  private async cleanupBacking(report: GCReport): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const ctx: Context = {};
    try {
      const seen = new Set(
        (
          this.db.stmt('SELECT backing_key FROM snapshots WHERE snapshotter = ?').all(this.name) as {
            backing_key: string;
          }[]
        ).map((r) => r.backing_key),
      );
      const children = new Map<string, string[]>();
      const roots: string[] = [];
      await this.backing.walk(ctx, (info) => {
        if (info.parent === '') roots.push(info.name);
        else {
          const list = children.get(info.parent) ?? [];
          list.push(info.name);
          children.set(info.parent, list);
        }
      });
      const prune = async (name: string): Promise<void> => {
        for (const child of children.get(name) ?? []) await prune(child);
        if (seen.has(name)) return;
        try {
          await this.backing.remove(ctx, name);
          report.removed.push({ type: this.resourceType, id: name });
        } catch (e) {
          // A child still there (held by a record): keep the parent, as containerd.
          if (!isFailedPrecondition(e) && !isNotFound(e)) throw e;
        }
      };
      for (const root of roots) await prune(root);
      if (isSnapshotCleaner(this.backing)) {
        try {
          await this.backing.cleanup(ctx);
        } catch (e) {
          if ((e as BerthError)?.code !== 'ERR_NOT_IMPLEMENTED') throw e;
        }
      }
    } catch (e) {
      this.dirty = true;
      // A proxy snapshotter whose server is down: try again at the next collection.
      if (isUnavailable(e)) return;
      throw e;
    }
  }
}
