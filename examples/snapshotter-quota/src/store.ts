import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import {
  AlreadyExistsError,
  applyLabelPaths,
  FailedPreconditionError,
  formatRFC3339Nano,
  InvalidArgumentError,
  type Labels,
  NotFoundError,
  parseRFC3339,
  preciseNow,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotUsage,
  validateLabels,
} from '@berth/api';

/** One snapshot as metadata.json keeps it. */
export interface Record {
  id: string;
  kind: SnapshotKind;
  /** Key (active, view) or name (committed). */
  name: string;
  parent: string;
  labels: Labels;
  created: string;
  updated: string;
  /** Bytes the writable layer may hold (active snapshots). */
  quota?: number;
  /** Measured at commit: a committed layer does not change. */
  usage?: SnapshotUsage;
}

interface Document {
  version: 1;
  next: number;
  snapshots: Record[];
}

/**
 * The snapshot records, in memory and in one JSON file replaced atomically (write, then
 * rename) after every change. Version 1 of the file: `{version, next, snapshots: Record[]}`.
 */
export class Store {
  private readonly byName = new Map<string, Record>();
  private next = 1;

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<Store> {
    const s = new Store(path);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text !== undefined) {
      const doc = JSON.parse(text) as Document;
      if (doc.version !== 1)
        throw new FailedPreconditionError(
          `${path}: metadata version ${doc.version}, this snapshotter reads 1`,
        );
      s.next = doc.next;
      for (const r of doc.snapshots) s.byName.set(r.name, r);
    }
    return s;
  }

  async save(): Promise<void> {
    const doc: Document = { version: 1, next: this.next, snapshots: [...this.byName.values()] };
    const tmp = `${this.path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(doc));
    await rename(tmp, this.path);
  }

  all(): Record[] {
    return [...this.byName.values()];
  }

  get(key: string): Record {
    if (key === '') throw new InvalidArgumentError('snapshot key must not be empty');
    const r = this.byName.get(key);
    if (!r) throw new NotFoundError(`snapshot ${key} does not exist`);
    return r;
  }

  /** The ids of parent and its ancestors, nearest first. */
  chain(parent: string): string[] {
    const ids: string[] = [];
    for (let p = parent; p !== ''; ) {
      const r = this.byName.get(p);
      if (!r) throw new NotFoundError(`parent snapshot ${p} does not exist`);
      ids.push(r.id);
      p = r.parent;
    }
    return ids;
  }

  /** Checks a new snapshot could be made; returns its parent chain. */
  checkCreate(key: string, parent: string, labels: Labels | undefined): string[] {
    if (key === '') throw new InvalidArgumentError('snapshot key must not be empty');
    validateLabels(labels);
    if (parent !== '') {
      const p = this.byName.get(parent);
      if (!p) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
      if (p.kind !== 'committed')
        throw new InvalidArgumentError(`parent "${parent}" is not committed snapshot`);
    }
    if (this.byName.has(key)) throw new AlreadyExistsError(`snapshot ${key} already exists`);
    return this.chain(parent);
  }

  create(
    kind: 'active' | 'view',
    key: string,
    parent: string,
    labels: Labels | undefined,
    quota?: number,
  ): Record {
    const now = formatRFC3339Nano(preciseNow());
    const r: Record = {
      id: String(this.next++),
      kind,
      name: key,
      parent,
      labels: { ...(labels ?? {}) },
      created: now,
      updated: now,
      ...(quota === undefined ? {} : { quota }),
    };
    this.byName.set(key, r);
    return r;
  }

  checkCommit(name: string, key: string, labels: Labels | undefined): Record {
    if (name === '') throw new InvalidArgumentError('snapshot name must not be empty');
    validateLabels(labels);
    const r = this.get(key);
    if (r.kind !== 'active') throw new FailedPreconditionError(`snapshot ${key} is not active`);
    if (this.byName.has(name)) throw new AlreadyExistsError(`committed snapshot ${name} already exists`);
    return r;
  }

  commit(r: Record, name: string, labels: Labels | undefined, usage: SnapshotUsage): void {
    this.byName.delete(r.name);
    const now = formatRFC3339Nano(preciseNow());
    const { quota: _quota, ...rest } = r;
    this.byName.set(name, {
      ...rest,
      kind: 'committed',
      name,
      labels: { ...(labels ?? {}) },
      created: now,
      updated: now,
      usage,
    });
  }

  checkRemove(key: string): Record {
    const r = this.get(key);
    for (const o of this.byName.values())
      if (o.parent === key) throw new FailedPreconditionError(`cannot remove snapshot ${key} with child`);
    return r;
  }

  delete(r: Record): void {
    this.byName.delete(r.name);
  }

  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[]): SnapshotInfo {
    for (const p of fieldpaths)
      if (p !== 'labels' && !p.startsWith('labels.'))
        throw new InvalidArgumentError(`cannot update "${p}" field on snapshot "${info.name}"`);
    const r = this.get(info.name);
    const labels = applyLabelPaths(r.labels, info.labels ?? {}, fieldpaths) ?? r.labels;
    for (const [k, v] of Object.entries(labels)) if (v === '') delete labels[k];
    validateLabels(labels);
    r.labels = labels;
    r.updated = formatRFC3339Nano(preciseNow());
    return toInfo(r);
  }
}

export function toInfo(r: Record): SnapshotInfo {
  return {
    kind: r.kind,
    name: r.name,
    parent: r.parent,
    labels: { ...r.labels },
    createdAt: parseRFC3339(r.created)!,
    updatedAt: parseRFC3339(r.updated)!,
  };
}
