import {
  type Context,
  type Descriptor,
  descriptorFromWire,
  descriptorToWire,
  type Labels,
  type Mount,
  mountToWire,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

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
    const res = await unary<wire.diff.ApplyResponse>(
      this.client,
      'Apply',
      { diff: descriptorToWire(desc), mounts: mounts.map(mountToWire), payloads: {} },
      ctx,
      this.target,
    );
    return descriptorFromWire(res.applied);
  }

  async compare(
    ctx: Context,
    lower: Mount[],
    upper: Mount[],
    opts: { mediaType?: string; ref?: string; labels?: Labels } = {},
  ): Promise<Descriptor> {
    const res = await unary<wire.diff.DiffResponse>(
      this.client,
      'Diff',
      {
        left: lower.map(mountToWire),
        right: upper.map(mountToWire),
        mediaType: opts.mediaType ?? '',
        ref: opts.ref ?? '',
        labels: opts.labels ?? {},
      },
      ctx,
      this.target,
    );
    return descriptorFromWire(res.diff);
  }
}
