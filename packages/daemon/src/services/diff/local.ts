import { type Context, type Descriptor, type Mount, NotImplementedError } from '@berth/api';
import type { CompareOptions, Differ } from './walking';

const notImplemented = (e: unknown): boolean => (e as { code?: string })?.code === 'ERR_NOT_IMPLEMENTED';

/**
 * The diff service layer (containerd's diff-service): tries the configured differs in
 * order, moving on only when one answers NotImplemented (a media type it cannot handle).
 */
export class DiffLocal implements Differ {
  constructor(private readonly differs: readonly Differ[]) {}

  async apply(ctx: Context, desc: Descriptor, mounts: Mount[]): Promise<Descriptor> {
    let last: unknown = new NotImplementedError('no differ configured: not implemented');
    for (const d of this.differs) {
      try {
        return await d.apply(ctx, desc, mounts);
      } catch (e) {
        if (!notImplemented(e)) throw e;
        last = e;
      }
    }
    throw last;
  }

  async compare(ctx: Context, lower: Mount[], upper: Mount[], opts?: CompareOptions): Promise<Descriptor> {
    let last: unknown = new NotImplementedError('no differ configured: not implemented');
    for (const d of this.differs) {
      try {
        return await d.compare(ctx, lower, upper, opts);
      } catch (e) {
        if (!notImplemented(e)) throw e;
        last = e;
      }
    }
    throw last;
  }
}
