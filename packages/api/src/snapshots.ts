import type { Context } from './context';
import { labelField } from './filters';
import type { Labels } from './labels';
import type { Mount } from './mount';

/** Snapshotter interface v1 (containerd's snapshots.Snapshotter). A breaking change is a v2 with an adapter. */
export type SnapshotKind = 'view' | 'active' | 'committed';

export interface SnapshotInfo {
  kind: SnapshotKind;
  /** The key (active, view) or name (committed). */
  name: string;
  /** Name of the committed parent, '' for none. */
  parent: string;
  labels: Labels;
  createdAt: Date;
  updatedAt: Date;
}

/** Filter fields of a snapshot, as containerd's snapshot adaptor: kind, name, parent, labels.<key>. */
export function snapshotField(info: SnapshotInfo, fieldpath: readonly string[]): string | undefined {
  switch (fieldpath[0]) {
    case 'kind':
      return info.kind;
    case 'name':
      return info.name;
    case 'parent':
      return info.parent;
    case 'labels':
      return labelField(info.labels, fieldpath);
    default:
      return undefined;
  }
}

export interface SnapshotUsage {
  /** Bytes used by this snapshot's own layer (not its parents). */
  size: number;
  inodes: number;
}

export interface SnapshotOptions {
  labels?: Labels;
}

export type SnapshotWalkFunc = (info: SnapshotInfo) => void | Promise<void>;

export interface Snapshotter {
  stat(ctx: Context, key: string): Promise<SnapshotInfo>;
  /** Updates labels by field paths (`labels`, `labels.<key>`); all labels when none given. */
  update(
    ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths?: string[],
  ): Promise<SnapshotInfo>;
  usage(ctx: Context, key: string): Promise<SnapshotUsage>;
  /** Mounts of an active snapshot or view. */
  mounts(ctx: Context, key: string): Promise<Mount[]>;
  /** A writable snapshot on top of the committed `parent` ('' for none). */
  prepare(ctx: Context, key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** A read-only snapshot of the committed `parent`. */
  view(ctx: Context, key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** Turns the active snapshot `key` into the committed snapshot `name`. */
  commit(ctx: Context, name: string, key: string, opts?: SnapshotOptions): Promise<void>;
  /** FailedPrecondition when the snapshot has children. */
  remove(ctx: Context, key: string): Promise<void>;
  walk(ctx: Context, fn: SnapshotWalkFunc, filters?: string[]): Promise<void>;
  close(): Promise<void>;
}

/** Optional ability: reclaim space of removed snapshots (checked for at run time). */
export interface SnapshotCleaner {
  cleanup(ctx: Context): Promise<void>;
}

export function isSnapshotCleaner(s: unknown): s is SnapshotCleaner {
  return typeof (s as SnapshotCleaner)?.cleanup === 'function';
}

/** containerd label naming the snapshot a committed layer unpacked to, on content. */
export const SNAPSHOT_GC_REF_PREFIX = 'containerd.io/gc.ref.snapshot.';
