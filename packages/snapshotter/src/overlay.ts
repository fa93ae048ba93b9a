import { chown, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount, SnapshotInfo, SnapshotKind } from '@berth/api';
import { LocalSnapshotter, type LocalSnapshotterOptions } from './local-snapshotter';
import type { MetaStore, StoredSnapshot } from './metastore';
import { needsUserXattr, supportsIndex } from './overlay-support';

/** Label containerd adds (on request) naming the directory that holds a snapshot's changes. */
export const UPPERDIR_LABEL = 'containerd.io/snapshot/overlay.upperdir';

export interface OverlaySnapshotterOptions extends LocalSnapshotterOptions {
  /** Report each snapshot's upper directory in the `containerd.io/snapshot/overlay.upperdir` label. */
  upperdirLabel?: boolean;
  /** Options added to every overlay mount (e.g. `volatile`). */
  mountOptions?: string[];
  /** Forces the `userxattr` option on or off; detected as containerd does when unset. */
  userxattr?: boolean;
}

/**
 * The overlayfs snapshotter: `<root>/snapshots/<id>/fs` holds a snapshot's own changes
 * (the upper directory while active, a lower directory once committed) and
 * `<root>/snapshots/<id>/work` is overlay's work directory.
 */
export class OverlaySnapshotter extends LocalSnapshotter {
  private readonly upperdirLabel: boolean;
  private readonly mountOptions: string[];

  private constructor(
    root: string,
    ms: MetaStore,
    opts: OverlaySnapshotterOptions,
    private readonly indexOff: boolean,
    private readonly userxattr: boolean,
  ) {
    super(root, ms, opts);
    this.upperdirLabel = opts.upperdirLabel ?? false;
    this.mountOptions = opts.mountOptions ?? [];
  }

  static async open(root: string, opts: OverlaySnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    const ms = LocalSnapshotter.openStore(root);
    try {
      const userxattr = opts.userxattr ?? (await needsUserXattr(root));
      const s = new OverlaySnapshotter(root, ms, opts, supportsIndex(), userxattr);
      await s.recover();
      return s;
    } catch (e) {
      ms.close();
      throw e;
    }
  }

  /** The directory holding the snapshot's own files. */
  upperPath(id: string): string {
    return join(this.snapshotDir(id), 'fs');
  }

  workPath(id: string): string {
    return join(this.snapshotDir(id), 'work');
  }

  protected needsDirectory(): boolean {
    return true;
  }

  protected async populate(dir: string, kind: SnapshotKind, parentIds: readonly string[]): Promise<void> {
    const fs = join(dir, 'fs');
    await mkdir(fs, { mode: 0o755 });
    if (kind === 'active') await mkdir(join(dir, 'work'), { mode: 0o711 });
    if (parentIds.length > 0) {
      // The merged root takes its owner from the upper directory: keep the parent's.
      const st = await stat(this.upperPath(parentIds[0]!));
      await chown(fs, st.uid, st.gid);
    }
  }

  protected usageDir(id: string): string {
    return this.upperPath(id);
  }

  protected override decorate(info: SnapshotInfo, id: string): SnapshotInfo {
    if (!this.upperdirLabel) return info;
    return { ...info, labels: { ...info.labels, [UPPERDIR_LABEL]: this.upperPath(id) } };
  }

  protected readonly mountErrorPrefix = 'failed to get active mount: ';

  protected mountsOf(s: StoredSnapshot): Mount[] {
    if (s.parentIds.length === 0) {
      // Overlay needs a lower directory: a snapshot with no parent is its own directory.
      return [
        { type: 'bind', source: this.upperPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] },
      ];
    }
    if (s.kind === 'view' && s.parentIds.length === 1) {
      // A view of one layer is that layer, read-only.
      return [{ type: 'bind', source: this.upperPath(s.parentIds[0]!), options: ['ro', 'rbind'] }];
    }
    const options: string[] = [];
    if (this.indexOff) options.push('index=off');
    if (this.userxattr) options.push('userxattr');
    options.push(...this.mountOptions);
    if (s.kind === 'active') {
      options.push(`workdir=${this.workPath(s.id)}`, `upperdir=${this.upperPath(s.id)}`);
    }
    // Newest layer first; with no upperdir (a view of several layers) overlay is read-only.
    options.push(`lowerdir=${s.parentIds.map((id) => this.upperPath(id)).join(':')}`);
    return [{ type: 'overlay', source: 'overlay', options }];
  }
}

/** Opens (creating when needed) an overlayfs snapshotter rooted at root. */
export function openOverlaySnapshotter(
  root: string,
  opts?: OverlaySnapshotterOptions,
): Promise<OverlaySnapshotter> {
  return OverlaySnapshotter.open(root, opts);
}
