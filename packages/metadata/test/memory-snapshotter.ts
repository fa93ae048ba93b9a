import {
  AlreadyExistsError,
  applyLabelPaths,
  type Context,
  FailedPreconditionError,
  InvalidArgumentError,
  type Labels,
  type Mount,
  NotFoundError,
  parseFilters,
  type SnapshotCleaner,
  type SnapshotInfo,
  type SnapshotOptions,
  type Snapshotter,
  type SnapshotUsage,
  type SnapshotWalkFunc,
} from '@berth/api';

/**
 * A backing snapshotter in memory for unit tests: it keeps infos only (no files) and
 * records every call, so tests see what the metadata layer asks of it. `failNext` makes
 * the next call of a method throw.
 */
export class MemorySnapshotter implements Snapshotter, SnapshotCleaner {
  readonly snapshots = new Map<string, SnapshotInfo>();
  readonly calls: string[] = [];
  readonly failNext = new Map<string, Error>();
  cleanups = 0;
  closed = 0;

  private record(call: string): void {
    this.calls.push(call);
    const e = this.failNext.get(call.split(' ')[0]!);
    if (e) {
      this.failNext.delete(call.split(' ')[0]!);
      throw e;
    }
  }

  private get(key: string): SnapshotInfo {
    const info = this.snapshots.get(key);
    if (!info) throw new NotFoundError(`snapshot ${key} does not exist`);
    return info;
  }

  async stat(_ctx: Context, key: string): Promise<SnapshotInfo> {
    this.record(`stat ${key}`);
    return structuredClone(this.get(key));
  }

  async update(_ctx: Context, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: string[] = []) {
    this.record(`update ${info.name} ${fieldpaths.join(',')}`);
    const current = this.get(info.name);
    current.labels = applyLabelPaths(current.labels, info.labels ?? {}, fieldpaths) ?? current.labels;
    current.updatedAt = new Date();
    return structuredClone(current);
  }

  async usage(_ctx: Context, key: string): Promise<SnapshotUsage> {
    this.record(`usage ${key}`);
    this.get(key);
    return { size: 4096, inodes: 1 };
  }

  async mounts(_ctx: Context, key: string): Promise<Mount[]> {
    this.record(`mounts ${key}`);
    const info = this.get(key);
    return [{ type: 'bind', source: `/mem/${key}`, options: [info.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }

  private create(kind: 'view' | 'active', key: string, parent: string, opts: SnapshotOptions): Mount[] {
    if (key === '') throw new InvalidArgumentError('snapshot key must not be empty');
    if (this.snapshots.has(key)) throw new AlreadyExistsError(`snapshot ${key} already exists`);
    if (parent !== '' && this.get(parent).kind !== 'committed') {
      throw new InvalidArgumentError(`parent "${parent}" is not committed snapshot`);
    }
    const now = new Date();
    this.snapshots.set(key, {
      kind,
      name: key,
      parent,
      labels: { ...opts.labels },
      createdAt: now,
      updatedAt: now,
    });
    return [{ type: 'bind', source: `/mem/${key}`, options: [kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }

  async prepare(_ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    this.record(`prepare ${key} ${parent}`);
    return this.create('active', key, parent, opts);
  }

  async view(_ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    this.record(`view ${key} ${parent}`);
    return this.create('view', key, parent, opts);
  }

  async commit(_ctx: Context, name: string, key: string, opts: SnapshotOptions = {}): Promise<void> {
    this.record(`commit ${name} ${key}`);
    const info = this.get(key);
    if (info.kind !== 'active') throw new FailedPreconditionError(`snapshot ${key} is not active`);
    if (this.snapshots.has(name)) throw new AlreadyExistsError(`committed snapshot ${name} already exists`);
    this.snapshots.delete(key);
    const now = new Date();
    const labels: Labels = { ...opts.labels };
    this.snapshots.set(name, { ...info, kind: 'committed', name, labels, createdAt: now, updatedAt: now });
  }

  async remove(_ctx: Context, key: string): Promise<void> {
    this.record(`remove ${key}`);
    this.get(key);
    for (const s of this.snapshots.values()) {
      if (s.parent === key) throw new FailedPreconditionError(`cannot remove snapshot ${key} with child`);
    }
    this.snapshots.delete(key);
  }

  async walk(_ctx: Context, fn: SnapshotWalkFunc, filters?: string[]): Promise<void> {
    this.record('walk');
    const filter = parseFilters(filters);
    for (const info of [...this.snapshots.values()]) {
      const ok = filter.match((path) => {
        if (path[0] === 'parent') return info.parent;
        if (path[0] === 'labels') return info.labels[path.slice(1).join('.')];
        return undefined;
      });
      if (ok) await fn(structuredClone(info));
    }
  }

  async cleanup(_ctx: Context): Promise<void> {
    this.record('cleanup');
    this.cleanups++;
  }

  async close(): Promise<void> {
    this.closed++;
  }
}
