import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Context,
  FailedPreconditionError,
  isFailedPrecondition,
  isInvalidArgument,
  isNoSpace,
  type Mount,
  noSpaceError,
  type SnapshotCleaner,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotOptions,
  type Snapshotter,
  type SnapshotUsage,
  type SnapshotWalkFunc,
  validateLabels,
} from '@berth/api';
import { diskUsage } from './disk-usage';
import { METADATA_FILE, MetaStore, type StoredSnapshot, validateKey } from './metastore';

/** Puts containerd's context in front of a fresh error's message. */
function prefixed<E extends Error>(e: E, prefix: string): E {
  e.message = `${prefix}${e.message}`;
  return e;
}

export interface LocalSnapshotterOptions {
  /**
   * Remove only forgets the snapshot and moves its directory aside; `cleanup()` frees the
   * space later (containerd's AsynchronousRemove, which the daemon's garbage collector drives).
   */
  asyncRemove?: boolean;
}

/** Directory names under `<root>/snapshots` that are not (yet, or any more) a snapshot. */
const TEMP_PREFIX = 'new-';
const REMOVED_PREFIX = 'rm-';
const ID = /^[0-9]+$/;

/**
 * What the overlay and native snapshotters share: metadata in `<root>/metadata.db`, one
 * directory per snapshot at `<root>/snapshots/<id>`, built under a temporary name and
 * renamed into place in the same transaction that records it, and moved aside to
 * `rm-<id>` in the transaction that forgets it, so a snapshot is never visible half-built
 * or half-removed.
 */
export abstract class LocalSnapshotter implements Snapshotter, SnapshotCleaner {
  protected readonly snapshotsDir: string;
  protected readonly asyncRemove: boolean;
  /** Directories being built or deleted right now, which cleanup() must leave alone. */
  private readonly busy = new Set<string>();
  private closed = false;

  protected constructor(
    readonly root: string,
    protected readonly ms: MetaStore,
    opts: LocalSnapshotterOptions,
  ) {
    this.snapshotsDir = join(root, 'snapshots');
    this.asyncRemove = opts.asyncRemove ?? false;
  }

  /** Opens (creating when needed) the metadata store and snapshots directory under root. */
  protected static openStore(root: string): MetaStore {
    mkdirSync(join(root, 'snapshots'), { recursive: true, mode: 0o700 });
    return new MetaStore(join(root, METADATA_FILE));
  }

  /** Whether a new snapshot of this kind on these parents gets a directory of its own. */
  protected abstract needsDirectory(kind: SnapshotKind, parentIds: readonly string[]): boolean;
  /** Fills the freshly made directory of a new snapshot (still under its temporary name). */
  protected abstract populate(
    dir: string,
    kind: SnapshotKind,
    parentIds: readonly string[],
    signal?: AbortSignal,
  ): Promise<void>;
  protected abstract mountsOf(s: StoredSnapshot): Mount[];
  /** The directory whose size is the snapshot's own usage. */
  protected abstract usageDir(id: string): string;
  /** Adds implementation labels to an info on its way out. */
  protected decorate(info: SnapshotInfo, _id: string): SnapshotInfo {
    return info;
  }

  protected snapshotDir(id: string): string {
    return join(this.snapshotsDir, id);
  }

  protected checkOpen(): void {
    if (this.closed) throw new FailedPreconditionError(`snapshotter at ${this.root} is closed`);
  }

  async stat(_ctx: Context, key: string): Promise<SnapshotInfo> {
    this.checkOpen();
    const { id, info } = this.ms.get(key);
    return this.decorate(info, id);
  }

  async update(
    _ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths?: string[],
  ): Promise<SnapshotInfo> {
    this.checkOpen();
    const updated = this.ms.write(
      () => this.ms.update(info, fieldpaths ?? []),
      `snapshot update ${JSON.stringify(info.name)}`,
    );
    return this.decorate(updated, this.ms.get(updated.name).id);
  }

  async usage(ctx: Context, key: string): Promise<SnapshotUsage> {
    this.checkOpen();
    const { id, info, usage } = this.ms.get(key);
    // A committed snapshot's usage was measured when it was committed; a view adds nothing.
    if (info.kind !== 'active') return usage;
    return diskUsage(this.usageDir(id), ctx.signal);
  }

  /** containerd's words before a Mounts failure (`failed to get active mount: `...). */
  protected abstract readonly mountErrorPrefix: string;

  async mounts(_ctx: Context, key: string): Promise<Mount[]> {
    this.checkOpen();
    let s: StoredSnapshot;
    try {
      s = this.ms.mountable(key);
    } catch (e) {
      throw isFailedPrecondition(e) ? prefixed(e, this.mountErrorPrefix) : e;
    }
    return this.mountsOf(s);
  }

  prepare(ctx: Context, key: string, parent = '', opts?: SnapshotOptions): Promise<Mount[]> {
    return this.create(ctx, 'active', key, parent, opts);
  }

  view(ctx: Context, key: string, parent = '', opts?: SnapshotOptions): Promise<Mount[]> {
    return this.create(ctx, 'view', key, parent, opts);
  }

  private async create(
    ctx: Context,
    kind: 'active' | 'view',
    key: string,
    parent: string,
    opts: SnapshotOptions | undefined,
  ): Promise<Mount[]> {
    this.checkOpen();
    validateKey(key);
    validateLabels(opts?.labels);
    // Fail a bad call before building anything (a native copy can be long).
    this.ms.checkFree(key);
    let parentIds: string[];
    try {
      parentIds = this.ms.resolveParent(parent);
    } catch (e) {
      // As containerd's snapshotters word a parent that is not committed.
      throw isInvalidArgument(e) ? prefixed(e, 'failed to create snapshot: ') : e;
    }

    let temp: string | undefined;
    if (this.needsDirectory(kind, parentIds)) {
      // Claimed before it exists, so a concurrent cleanup() never sees it unclaimed.
      temp = join(this.snapshotsDir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      this.busy.add(temp);
    }
    try {
      if (temp !== undefined) {
        try {
          await mkdir(temp, { mode: 0o700 });
          await this.populate(temp, kind, parentIds, ctx.signal);
        } catch (e) {
          // A parent removed while we copied it explains the failure better than ENOENT.
          this.ms.resolveParent(parent);
          // The half-built directory goes in the finally below: nothing half-made stays.
          throw noSpaceError(
            e,
            (e as NodeJS.ErrnoException).path ?? temp,
            `snapshot ${kind === 'view' ? 'view' : 'prepare'} ${JSON.stringify(key)}`,
          );
        }
      }
      this.checkOpen();
      const s = this.ms.write(
        () => {
          const s = this.ms.create(kind, key, parent, opts?.labels, parentIds);
          if (temp !== undefined) renameSync(temp, this.snapshotDir(s.id));
          return s;
        },
        `snapshot ${kind === 'view' ? 'view' : 'prepare'} ${JSON.stringify(key)}`,
      );
      if (temp !== undefined) this.busy.delete(temp);
      temp = undefined;
      return this.mountsOf(s);
    } finally {
      if (temp !== undefined) {
        await rm(temp, { recursive: true, force: true }).catch(() => {});
        this.busy.delete(temp);
      }
    }
  }

  async commit(ctx: Context, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    this.checkOpen();
    validateKey(name, 'name');
    validateLabels(opts?.labels);
    const { id, info } = this.ms.get(key);
    if (info.kind !== 'active') {
      throw new FailedPreconditionError(
        `failed to commit snapshot: snapshot ${JSON.stringify(key)} is not active`,
      );
    }
    this.ms.checkFree(name);
    const usage = await diskUsage(this.usageDir(id), ctx.signal);
    this.checkOpen();
    // The record changes in one transaction: the key disappears as the name appears.
    this.ms.write(
      () => this.ms.commit(name, key, opts?.labels, usage, id),
      `snapshot commit ${JSON.stringify(name)}`,
    );
  }

  async remove(_ctx: Context, key: string): Promise<void> {
    this.checkOpen();
    let moved: string | undefined;
    try {
      moved = this.removeRecord(key);
    } catch (e) {
      // A remove frees space, so a full disk must not stop it: spend the reserve, once.
      if (!isNoSpace(e) || !this.ms.freeSpace()) throw e;
      moved = this.removeRecord(key);
    }
    if (moved === undefined || this.asyncRemove) return;
    this.busy.add(moved);
    try {
      // The snapshot is gone already; a failure here only leaves rm-<id> for cleanup().
      await rm(moved, { recursive: true, force: true }).catch(() => {});
    } finally {
      this.busy.delete(moved);
    }
  }

  /** Forgets `key` and renames its directory aside, in one transaction; the directory or undefined. */
  private removeRecord(key: string): string | undefined {
    let moved: string | undefined;
    try {
      this.ms.write(
        () => {
          moved = this.moveAside(this.ms.remove(key));
        },
        `snapshot remove ${JSON.stringify(key)}`,
      );
      return moved;
    } catch (e) {
      // The transaction failed after the rename: put the directory back with its record.
      if (moved !== undefined) this.restore(moved);
      throw e;
    }
  }

  /** Renames a snapshot's directory to rm-<id>; undefined when it has none. */
  private moveAside(id: string): string | undefined {
    const to = join(this.snapshotsDir, `${REMOVED_PREFIX}${id}`);
    try {
      renameSync(this.snapshotDir(id), to);
      return to;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private restore(moved: string): void {
    const id = moved.slice(moved.lastIndexOf(REMOVED_PREFIX) + REMOVED_PREFIX.length);
    try {
      renameSync(moved, this.snapshotDir(id));
    } catch {
      // Recovery at the next open renames it back (its record still exists).
    }
  }

  async walk(_ctx: Context, fn: SnapshotWalkFunc, filters?: string[]): Promise<void> {
    this.checkOpen();
    for (const { id, info } of this.ms.list(filters)) await fn(this.decorate(info, id));
  }

  /**
   * Frees the space of removed snapshots and of anything a crash left under snapshots/:
   * rm-<id> directories, half-built new-* directories, directories of unknown ids.
   */
  async cleanup(_ctx: Context): Promise<void> {
    this.checkOpen();
    const garbage = this.garbage();
    for (const dir of garbage) this.busy.add(dir);
    try {
      for (const dir of garbage) await rm(dir, { recursive: true, force: true });
    } finally {
      for (const dir of garbage) this.busy.delete(dir);
    }
    // Space may be back: keep room for the next full disk's removes.
    this.ms.restoreReserve();
  }

  private garbage(): string[] {
    const ids = this.ms.ids();
    return readdirSync(this.snapshotsDir)
      .filter((name) => !(ID.test(name) && ids.has(name)))
      .map((name) => join(this.snapshotsDir, name))
      .filter((path) => !this.busy.has(path));
  }

  /**
   * Makes the disk agree with the metadata after a crash: a snapshot whose directory was
   * moved aside by a removal that never committed gets its directory back. Run at open.
   */
  protected async recover(): Promise<void> {
    const ids = this.ms.ids();
    for (const name of readdirSync(this.snapshotsDir)) {
      if (!name.startsWith(REMOVED_PREFIX)) continue;
      const id = name.slice(REMOVED_PREFIX.length);
      if (ids.has(id)) this.restore(join(this.snapshotsDir, name));
    }
    if (!this.asyncRemove) await this.cleanup({});
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ms.close();
  }
}
