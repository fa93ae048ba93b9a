import { chmod } from 'node:fs/promises';
import type { Mount, SnapshotKind } from '@berth/api';
import { copyTree } from './copy-tree';
import { LocalSnapshotter, type LocalSnapshotterOptions } from './local-snapshotter';
import type { MetaStore, StoredSnapshot } from './metastore';

export interface NativeSnapshotterOptions extends LocalSnapshotterOptions {}

/**
 * The native snapshotter, for filesystems overlay cannot use: every active snapshot is a
 * full copy of its parent at `<root>/snapshots/<id>`, and every mount is a bind.
 */
export class NativeSnapshotter extends LocalSnapshotter {
  private constructor(root: string, ms: MetaStore, opts: NativeSnapshotterOptions) {
    super(root, ms, opts);
  }

  static async open(root: string, opts: NativeSnapshotterOptions = {}): Promise<NativeSnapshotter> {
    const ms = LocalSnapshotter.openStore(root);
    try {
      const s = new NativeSnapshotter(root, ms, opts);
      await s.recover();
      return s;
    } catch (e) {
      ms.close();
      throw e;
    }
  }

  /** The directory holding the snapshot's files. */
  pathOf(id: string): string {
    return this.snapshotDir(id);
  }

  protected needsDirectory(kind: SnapshotKind, parentIds: readonly string[]): boolean {
    // A view of a committed layer is that layer, bound read-only: nothing to copy.
    return kind === 'active' || parentIds.length === 0;
  }

  protected async populate(
    dir: string,
    _kind: SnapshotKind,
    parentIds: readonly string[],
    signal?: AbortSignal,
  ): Promise<void> {
    if (parentIds.length === 0) await chmod(dir, 0o755);
    else await copyTree(this.snapshotDir(parentIds[0]!), dir, signal);
  }

  protected usageDir(id: string): string {
    return this.snapshotDir(id);
  }

  protected readonly mountErrorPrefix = 'failed to get snapshot mount: ';

  protected mountsOf(s: StoredSnapshot): Mount[] {
    const own = s.kind === 'active' || s.parentIds.length === 0;
    return [
      {
        type: 'bind',
        source: this.snapshotDir(own ? s.id : s.parentIds[0]!),
        options: ['rbind', s.kind === 'view' ? 'ro' : 'rw'],
      },
    ];
  }
}

/** Opens (creating when needed) a native snapshotter rooted at root. */
export function openNativeSnapshotter(
  root: string,
  opts?: NativeSnapshotterOptions,
): Promise<NativeSnapshotter> {
  return NativeSnapshotter.open(root, opts);
}
