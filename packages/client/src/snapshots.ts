import {
  type Context,
  type Mount,
  mountFromWire,
  type SnapshotCleaner,
  type SnapshotInfo,
  type SnapshotOptions,
  type Snapshotter,
  type SnapshotUsage,
  type SnapshotWalkFunc,
  snapshotInfoFromWire,
  snapshotKindToWire,
  snapshotUsageFromWire,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { serverStream, unary } from './rpc';

/**
 * A Snapshotter over containerd.services.snapshots.v1, as containerd's snapshots/proxy:
 * every call names `snapshotter` on the wire. Reaches berthd, containerd, or a standalone
 * snapshotter server (`berth-snapshotter serve`), which ignores the name.
 */
export class RemoteSnapshotter implements Snapshotter, SnapshotCleaner {
  constructor(
    private readonly client: grpc.Client,
    /** The snapshotter the server should use (`overlayfs`, `native`, a proxy's name). */
    readonly snapshotter: string,
    private readonly target?: string,
    private readonly onClose?: () => void,
  ) {}

  private call<Res>(method: string, req: object, ctx: Context): Promise<Res> {
    return unary<Res>(this.client, method, { snapshotter: this.snapshotter, ...req }, ctx, this.target);
  }

  async stat(ctx: Context, key: string): Promise<SnapshotInfo> {
    const res = await this.call<wire.snapshots.StatSnapshotResponse>('Stat', { key }, ctx);
    return snapshotInfoFromWire(res.info);
  }

  async update(
    ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<SnapshotInfo> {
    const res = await this.call<wire.snapshots.StatSnapshotResponse>(
      'Update',
      {
        info: { name: info.name, labels: info.labels ?? {}, kind: snapshotKindToWire('committed') },
        updateMask: fieldpaths,
      },
      ctx,
    );
    return snapshotInfoFromWire(res.info);
  }

  async usage(ctx: Context, key: string): Promise<SnapshotUsage> {
    return snapshotUsageFromWire(await this.call<wire.snapshots.UsageResponse>('Usage', { key }, ctx));
  }

  async mounts(ctx: Context, key: string): Promise<Mount[]> {
    const res = await this.call<wire.snapshots.MountsResponse>('Mounts', { key }, ctx);
    return res.mounts.map(mountFromWire);
  }

  async prepare(ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    const res = await this.call<wire.snapshots.MountsResponse>(
      'Prepare',
      { key, parent, labels: opts.labels ?? {} },
      ctx,
    );
    return res.mounts.map(mountFromWire);
  }

  async view(ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    const res = await this.call<wire.snapshots.MountsResponse>(
      'View',
      { key, parent, labels: opts.labels ?? {} },
      ctx,
    );
    return res.mounts.map(mountFromWire);
  }

  async commit(ctx: Context, name: string, key: string, opts: SnapshotOptions = {}): Promise<void> {
    await this.call('Commit', { name, key, labels: opts.labels ?? {} }, ctx);
  }

  async remove(ctx: Context, key: string): Promise<void> {
    await this.call('Remove', { key }, ctx);
  }

  async walk(ctx: Context, fn: SnapshotWalkFunc, filters: string[] = []): Promise<void> {
    const stream = serverStream<wire.snapshots.ListSnapshotsResponse>(
      this.client,
      'List',
      { snapshotter: this.snapshotter, filters },
      ctx,
      this.target,
    );
    for await (const msg of stream) {
      for (const info of msg.info) await fn(snapshotInfoFromWire(info));
    }
  }

  async cleanup(ctx: Context): Promise<void> {
    await this.call('Cleanup', {}, ctx);
  }

  /** Closes the connection when this snapshotter owns it (connectSnapshotter); else nothing. */
  async close(): Promise<void> {
    this.onClose?.();
  }
}
