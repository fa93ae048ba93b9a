import { chown, mkdir, readdir, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Context,
  FailedPreconditionError,
  InvalidArgumentError,
  type Labels,
  type Mount,
  parseFilters,
  ResourceExhaustedError,
  type SnapshotCleaner,
  type SnapshotInfo,
  type SnapshotOptions,
  type Snapshotter,
  type SnapshotUsage,
  type SnapshotWalkFunc,
  snapshotField,
} from '@berth/api';
import { diskUsage, isMountPoint, run } from './run';
import { type Record, Store, toInfo } from './store';

/**
 * A label on prepare that gives one snapshot its own quota, in bytes. Under
 * `containerd.io/snapshot/`, the prefix containerd's (and berthd's) metadata layer passes on
 * to snapshotters: `ctr run --snapshotter-label containerd.io/snapshot/berth-quota.size=…`.
 */
export const QUOTA_LABEL = 'containerd.io/snapshot/berth-quota.size';

export interface QuotaOptions {
  /** Bytes a writable layer may hold unless its QUOTA_LABEL says otherwise. */
  size: number;
  /** Inodes a writable layer may hold; 0 leaves tmpfs' default (half the RAM's pages). */
  inodes?: number;
}

const parseSize = (what: string, v: unknown): number => {
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 4096)
    throw new InvalidArgumentError(`${what} = ${JSON.stringify(v)}: expected a size in bytes, at least 4096`);
  return n;
};

/**
 * A snapshotter whose writable layers are each a tmpfs of a fixed size (the quota): a
 * container that writes past it gets ENOSPC instead of filling the host's disk, and its
 * scratch writes never touch the disk at all. Committed layers are copied out to
 * `<root>/layers/<id>/fs` on disk (root may be any directory, on any filesystem) and read
 * through overlayfs from there.
 *
 * Layout: `metadata.json` (see store.ts), `layers/<id>/fs`, `active/<id>` (a tmpfs mount
 * holding `fs`, the overlay upper, and `work`). Writable layers live in memory: they survive
 * a restart of berthd (the mounts stay) but not of the machine; open() mounts an empty
 * tmpfs for each one it finds unmounted.
 */
export class QuotaSnapshotter implements Snapshotter, SnapshotCleaner {
  private lock: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly root: string,
    private readonly store: Store,
    private readonly opts: Required<QuotaOptions>,
  ) {}

  static async open(root: string, opts: QuotaOptions): Promise<QuotaSnapshotter> {
    const size = parseSize('size', opts.size);
    const inodes = opts.inodes ?? 0;
    if (!Number.isSafeInteger(inodes) || inodes < 0)
      throw new InvalidArgumentError(
        `inodes = ${JSON.stringify(opts.inodes)}: expected a count, 0 for no limit`,
      );
    await mkdir(join(root, 'layers'), { recursive: true, mode: 0o700 });
    await mkdir(join(root, 'active'), { recursive: true, mode: 0o700 });
    const sn = new QuotaSnapshotter(root, await Store.open(join(root, 'metadata.json')), { size, inodes });
    for (const r of sn.store.all())
      if (r.kind === 'active' && !(await isMountPoint(sn.activeDir(r.id)))) await sn.mountLayer(r);
    return sn;
  }

  private layerDir(id: string): string {
    return join(this.root, 'layers', id, 'fs');
  }

  private activeDir(id: string): string {
    return join(this.root, 'active', id);
  }

  /** One operation at a time: the records and the mounts change together. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(() => {
      if (this.closed) throw new FailedPreconditionError(`snapshotter at ${this.root} is closed`);
      return fn();
    });
    this.lock = next.catch(() => {});
    return next;
  }

  private async mountLayer(r: Record): Promise<void> {
    const dir = this.activeDir(r.id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const options = [`size=${r.quota ?? this.opts.size}`, 'mode=0700'];
    if (this.opts.inodes > 0) options.push(`nr_inodes=${this.opts.inodes}`);
    await run('mount', ['-t', 'tmpfs', '-o', options.join(','), `berth-quota-${r.id}`, dir]);
    try {
      await mkdir(join(dir, 'fs'), { mode: 0o755 });
      await mkdir(join(dir, 'work'), { mode: 0o700 });
      // The layer's root starts owned as its parent's root, as containerd's overlay does:
      // otherwise overlayfs shows the upper directory's owner (root) for /.
      const [parent] = this.store.chain(r.parent);
      if (parent !== undefined) {
        const st = await stat(this.layerDir(parent));
        await chown(join(dir, 'fs'), st.uid, st.gid);
      }
    } catch (e) {
      await this.unmountLayer(r.id);
      throw e;
    }
  }

  private async unmountLayer(id: string): Promise<void> {
    const dir = this.activeDir(id);
    if (await isMountPoint(dir)) await run('umount', [dir]);
    await rmdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  private quotaOf(key: string, labels: Labels | undefined): number {
    const v = labels?.[QUOTA_LABEL];
    return v === undefined ? this.opts.size : parseSize(`label ${QUOTA_LABEL} of snapshot "${key}"`, v);
  }

  private mountsOf(r: Record): Mount[] {
    const lowers = this.store.chain(r.parent).map((id) => this.layerDir(id));
    if (r.kind === 'view') {
      if (lowers.length === 0)
        return [{ type: 'bind', source: this.layerDir(r.id), options: ['rbind', 'ro'] }];
      if (lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, options: ['rbind', 'ro'] }];
      return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] }];
    }
    const upper = join(this.activeDir(r.id), 'fs');
    if (lowers.length === 0) return [{ type: 'bind', source: upper, options: ['rbind', 'rw'] }];
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [
          `workdir=${join(this.activeDir(r.id), 'work')}`,
          `upperdir=${upper}`,
          `lowerdir=${lowers.join(':')}`,
        ],
      },
    ];
  }

  stat(_ctx: Context, key: string): Promise<SnapshotInfo> {
    return this.serial(async () => toInfo(this.store.get(key)));
  }

  update(
    _ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<SnapshotInfo> {
    return this.serial(async () => {
      const out = this.store.update(info, fieldpaths);
      await this.store.save();
      return out;
    });
  }

  usage(_ctx: Context, key: string): Promise<SnapshotUsage> {
    return this.serial(async () => {
      const r = this.store.get(key);
      if (r.kind === 'committed') return r.usage ?? { size: 0, inodes: 0 };
      if (r.kind === 'view') return { size: 0, inodes: 0 };
      return diskUsage(join(this.activeDir(r.id), 'fs'));
    });
  }

  mounts(_ctx: Context, key: string): Promise<Mount[]> {
    return this.serial(async () => {
      const r = this.store.get(key);
      if (r.kind === 'committed')
        throw new FailedPreconditionError(`requested snapshot ${key} not active or view`);
      return this.mountsOf(r);
    });
  }

  prepare(_ctx: Context, key: string, parent = '', opts?: SnapshotOptions): Promise<Mount[]> {
    return this.serial(async () => {
      this.store.checkCreate(key, parent, opts?.labels);
      const quota = this.quotaOf(key, opts?.labels);
      const r = this.store.create('active', key, parent, opts?.labels, quota);
      try {
        await this.mountLayer(r);
        await this.store.save();
      } catch (e) {
        this.store.delete(r);
        await this.unmountLayer(r.id).catch(() => {});
        throw e;
      }
      return this.mountsOf(r);
    });
  }

  view(_ctx: Context, key: string, parent = '', opts?: SnapshotOptions): Promise<Mount[]> {
    return this.serial(async () => {
      this.store.checkCreate(key, parent, opts?.labels);
      const r = this.store.create('view', key, parent, opts?.labels);
      try {
        if (parent === '') await mkdir(this.layerDir(r.id), { recursive: true, mode: 0o755 });
        await this.store.save();
      } catch (e) {
        this.store.delete(r);
        throw e;
      }
      return this.mountsOf(r);
    });
  }

  /**
   * Copies the writable layer to disk and records it committed. A layer that filled its
   * quota is refused: a write into it was probably cut short by ENOSPC, and a truncated
   * layer must not become the parent of others.
   */
  commit(_ctx: Context, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    return this.serial(async () => {
      const r = this.store.checkCommit(name, key, opts?.labels);
      const active = this.activeDir(r.id);
      const fs = await statfs(active);
      if (fs.bavail === 0 || fs.ffree === 0) {
        const quota = r.quota ?? this.opts.size;
        throw new ResourceExhaustedError(
          `snapshot ${key} filled its quota (${fs.bavail === 0 ? `${quota} bytes` : `${fs.files} inodes`}): a write into it may have been cut short, not committing it as ${name}`,
        );
      }
      const usage = await diskUsage(join(active, 'fs'));
      const layer = this.layerDir(r.id);
      await rm(join(this.root, 'layers', r.id), { recursive: true, force: true });
      await mkdir(join(this.root, 'layers', r.id), { mode: 0o700 });
      try {
        // cp -a keeps what a layer is made of: owners, modes, times, hard links, device
        // nodes (overlay's whiteouts) and xattrs (overlay's opaque markers) as root.
        await run('cp', ['-a', '--no-target-directory', join(active, 'fs'), layer]);
        this.store.commit(r, name, opts?.labels, usage);
        await this.store.save();
      } catch (e) {
        await rm(join(this.root, 'layers', r.id), { recursive: true, force: true });
        throw e;
      }
      await this.unmountLayer(r.id);
    });
  }

  remove(_ctx: Context, key: string): Promise<void> {
    return this.serial(async () => {
      const r = this.store.checkRemove(key);
      this.store.delete(r);
      await this.store.save();
      // Records go first: a crash past this point leaves garbage for cleanup(), not a record without files.
      if (r.kind === 'active') await this.unmountLayer(r.id);
      else await rm(join(this.root, 'layers', r.id), { recursive: true, force: true });
    });
  }

  walk(_ctx: Context, fn: SnapshotWalkFunc, filters?: string[]): Promise<void> {
    const filter = parseFilters(filters);
    return this.serial(async () =>
      this.store
        .all()
        .map(toInfo)
        .filter((info) => filter.match((fp) => snapshotField(info, fp))),
    ).then(async (infos) => {
      for (const info of infos) await fn(info);
    });
  }

  /** Removes layers and unmounts writable layers no record names (left by a crash). */
  cleanup(_ctx: Context): Promise<void> {
    return this.serial(async () => {
      const ids = new Set(this.store.all().map((r) => r.id));
      for (const id of await readdir(join(this.root, 'layers')))
        if (!ids.has(id)) await rm(join(this.root, 'layers', id), { recursive: true, force: true });
      for (const id of await readdir(join(this.root, 'active')))
        if (!ids.has(id)) await this.unmountLayer(id);
    });
  }

  /** Leaves writable layers mounted: they are the containers' data until removed. */
  async close(): Promise<void> {
    await this.lock;
    this.closed = true;
  }
}
