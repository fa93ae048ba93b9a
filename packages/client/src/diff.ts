import type { Context, Descriptor, Labels, Mount } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

interface DescriptorMessage {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

const toMessage = (d: Descriptor): DescriptorMessage => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: d.size,
  annotations: d.annotations ?? {},
});

const fromMessage = (m: DescriptorMessage | null | undefined): Descriptor => {
  const d: Descriptor = {
    mediaType: m?.mediaType ?? '',
    digest: m?.digest ?? '',
    size: Number(m?.size ?? 0),
  };
  if (m && Object.keys(m.annotations ?? {}).length > 0) d.annotations = { ...m.annotations };
  return d;
};

const mountMessage = (m: Mount) => ({
  type: m.type,
  source: m.source,
  target: m.target ?? '',
  options: m.options ?? [],
});

/**
 * containerd.services.diff.v1.Diff: Apply unpacks a layer from the daemon's content store
 * onto mounts (what a client-side pull unpacks with), Diff writes the difference of two
 * mount sets into it. As containerd's diff/proxy.
 */
export class RemoteDiff {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  /** Applies the layer `desc` onto mounts; answers the uncompressed diff (its digest is the diffID). */
  async apply(ctx: Context, desc: Descriptor, mounts: Mount[]): Promise<Descriptor> {
    const res = await unary<{ applied: DescriptorMessage | null }>(
      this.client,
      'Apply',
      { diff: toMessage(desc), mounts: mounts.map(mountMessage), payloads: {} },
      ctx,
      this.target,
    );
    return fromMessage(res.applied);
  }

  async compare(
    ctx: Context,
    lower: Mount[],
    upper: Mount[],
    opts: { mediaType?: string; ref?: string; labels?: Labels } = {},
  ): Promise<Descriptor> {
    const res = await unary<{ diff: DescriptorMessage | null }>(
      this.client,
      'Diff',
      {
        left: lower.map(mountMessage),
        right: upper.map(mountMessage),
        mediaType: opts.mediaType ?? '',
        ref: opts.ref ?? '',
        labels: opts.labels ?? {},
      },
      ctx,
      this.target,
    );
    return fromMessage(res.diff);
  }
}
