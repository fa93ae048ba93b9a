import type {
  Context,
  Labels,
  Mount,
  SnapshotCleaner,
  SnapshotInfo,
  SnapshotKind,
  SnapshotOptions,
  Snapshotter,
  SnapshotUsage,
  SnapshotWalkFunc,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { serverStream, type Timestamp, toDate, unary } from './rpc';

interface InfoMessage {
  name: string;
  parent: string;
  kind: string;
  createdAt: Timestamp | null;
  updatedAt: Timestamp | null;
  labels: Labels;
}

interface MountMessage {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

const KIND: Record<SnapshotKind, string> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

/** As containerd's proxy: anything not a view or active snapshot is committed. */
function infoFromMessage(m: InfoMessage | null | undefined): SnapshotInfo {
  return {
    kind: m?.kind === 'VIEW' ? 'view' : m?.kind === 'ACTIVE' ? 'active' : 'committed',
    name: m?.name ?? '',
    parent: m?.parent ?? '',
    labels: { ...(m?.labels ?? {}) },
    createdAt: toDate(m?.createdAt),
    updatedAt: toDate(m?.updatedAt),
  };
}

function mountFromMessage(m: MountMessage): Mount {
  const out: Mount = { type: m.type, source: m.source, options: [...(m.options ?? [])] };
  if (m.target) out.target = m.target;
  return out;
}

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
    const res = await this.call<{ info: InfoMessage }>('Stat', { key }, ctx);
    return infoFromMessage(res.info);
  }

  async update(
    ctx: Context,
    info: Pick<SnapshotInfo, 'name' | 'labels'>,
    fieldpaths: string[] = [],
  ): Promise<SnapshotInfo> {
    const res = await this.call<{ info: InfoMessage }>(
      'Update',
      {
        info: { name: info.name, labels: info.labels ?? {}, kind: KIND.committed },
        updateMask: { paths: fieldpaths },
      },
      ctx,
    );
    return infoFromMessage(res.info);
  }

  async usage(ctx: Context, key: string): Promise<SnapshotUsage> {
    const res = await this.call<{ size: number; inodes: number }>('Usage', { key }, ctx);
    return { size: Number(res.size), inodes: Number(res.inodes) };
  }

  async mounts(ctx: Context, key: string): Promise<Mount[]> {
    const res = await this.call<{ mounts: MountMessage[] }>('Mounts', { key }, ctx);
    return res.mounts.map(mountFromMessage);
  }

  async prepare(ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    const res = await this.call<{ mounts: MountMessage[] }>(
      'Prepare',
      { key, parent, labels: opts.labels ?? {} },
      ctx,
    );
    return res.mounts.map(mountFromMessage);
  }

  async view(ctx: Context, key: string, parent = '', opts: SnapshotOptions = {}): Promise<Mount[]> {
    const res = await this.call<{ mounts: MountMessage[] }>(
      'View',
      { key, parent, labels: opts.labels ?? {} },
      ctx,
    );
    return res.mounts.map(mountFromMessage);
  }

  async commit(ctx: Context, name: string, key: string, opts: SnapshotOptions = {}): Promise<void> {
    await this.call('Commit', { name, key, labels: opts.labels ?? {} }, ctx);
  }

  async remove(ctx: Context, key: string): Promise<void> {
    await this.call('Remove', { key }, ctx);
  }

  async walk(ctx: Context, fn: SnapshotWalkFunc, filters: string[] = []): Promise<void> {
    const stream = serverStream<{ info: InfoMessage[] }>(
      this.client,
      'List',
      { snapshotter: this.snapshotter, filters },
      ctx,
      this.target,
    );
    for await (const msg of stream) {
      for (const info of msg.info) await fn(infoFromMessage(info));
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
