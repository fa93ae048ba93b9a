import {
  type Context,
  InvalidArgumentError,
  type Mount,
  type Publisher,
  type SnapshotCleaner,
  type SnapshotInfo,
  type SnapshotOptions,
  type Snapshotter,
  type SnapshotUsage,
  type SnapshotWalkFunc,
  Topics,
} from '@berth/api';
import type { MetadataSnapshotter } from '@berth/metadata';

/**
 * The snapshots service layer over one metadata snapshotter: the same calls, plus
 * containerd's events after a successful prepare, commit and remove.
 */
export class EventedSnapshotter implements Snapshotter, SnapshotCleaner {
  constructor(
    readonly inner: MetadataSnapshotter,
    private readonly publisher: Publisher,
  ) {}

  stat(ctx: Context, key: string): Promise<SnapshotInfo> {
    return this.inner.stat(ctx, key);
  }

  update(
    ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths?: string[],
  ): Promise<SnapshotInfo> {
    return this.inner.update(ctx, info, fieldpaths);
  }

  usage(ctx: Context, key: string): Promise<SnapshotUsage> {
    return this.inner.usage(ctx, key);
  }

  mounts(ctx: Context, key: string): Promise<Mount[]> {
    return this.inner.mounts(ctx, key);
  }

  async prepare(ctx: Context, key: string, parent = '', opts?: SnapshotOptions): Promise<Mount[]> {
    const mounts = await this.inner.prepare(ctx, key, parent, opts);
    await this.publisher.publish(ctx, Topics.snapshotPrepare, 'containerd.events.SnapshotPrepare', {
      key,
      parent,
    });
    return mounts;
  }

  view(ctx: Context, key: string, parent = '', opts?: SnapshotOptions): Promise<Mount[]> {
    return this.inner.view(ctx, key, parent, opts);
  }

  async commit(ctx: Context, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    await this.inner.commit(ctx, name, key, opts);
    await this.publisher.publish(ctx, Topics.snapshotCommit, 'containerd.events.SnapshotCommit', {
      key,
      name,
    });
  }

  async remove(ctx: Context, key: string): Promise<void> {
    await this.inner.remove(ctx, key);
    await this.publisher.publish(ctx, Topics.snapshotRemove, 'containerd.events.SnapshotRemove', { key });
  }

  walk(ctx: Context, fn: SnapshotWalkFunc, filters?: string[]): Promise<void> {
    return this.inner.walk(ctx, fn, filters);
  }

  /** The metadata snapshotter's cleanup is garbage collection: collect, which ends with the backing cleanup. */
  async cleanup(_ctx: Context): Promise<void> {
    await this.collect();
  }

  /** Set by the service: runs a garbage collection. */
  collect: () => Promise<unknown> = async () => {};

  /** The daemon closes the backing snapshotter plugins itself. */
  async close(): Promise<void> {}
}

/** What the snapshots-service plugin provides: every snapshotter by name, and the default. */
export class SnapshotsLocal {
  constructor(
    readonly snapshotters: ReadonlyMap<string, EventedSnapshotter>,
    /** The snapshotter an empty `snapshotter` field means. */
    readonly defaultSnapshotter: string,
  ) {}

  /** The snapshotter `name` (the default for ''); InvalidArgument in containerd's words otherwise. */
  get(name: string): EventedSnapshotter {
    const sn = this.snapshotters.get(name || this.defaultSnapshotter);
    if (!sn)
      throw new InvalidArgumentError(
        `snapshotter not loaded: ${name || this.defaultSnapshotter}: invalid argument`,
      );
    return sn;
  }
}
