import type { ContentStore } from '@berth/api';
import {
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  InvalidArgumentError,
  type Labels,
  type Mount,
  NotImplementedError,
  type Provider,
  type ReaderAt,
  validateDigest,
} from '@berth/api';
import {
  type ApplyPool,
  defaultApplyPool,
  isLayerMediaType,
  layerCompression,
  MediaTypes,
  writeDiff,
} from '@berth/images';
import { withTempMount } from '@berth/sys';

/** Applies a layer from the content store onto mounts (containerd's diff.Applier). */
export interface Applier {
  apply(ctx: Context, desc: Descriptor, mounts: Mount[]): Promise<Descriptor>;
}

export interface CompareOptions {
  mediaType?: string;
  ref?: string;
  labels?: Labels;
}

/** Writes the difference of two mount sets into the content store (containerd's diff.Comparer). */
export interface Comparer {
  compare(ctx: Context, lower: Mount[], upper: Mount[], opts?: CompareOptions): Promise<Descriptor>;
}

export type Differ = Applier & Comparer;

const READ_CHUNK = 1 << 20;

/** A blob as a stream of chunks, one read always in flight ahead of the consumer. */
export async function* readBlob(ra: ReaderAt, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let offset = 0;
  let next: Promise<Buffer> | undefined = ra.readAt(0, READ_CHUNK);
  while (next) {
    const chunk: Buffer = await next;
    signal?.throwIfAborted();
    offset += chunk.length;
    next = chunk.length > 0 && offset < ra.size ? ra.readAt(offset, READ_CHUNK) : undefined;
    if (chunk.length > 0) yield chunk;
  }
  if (offset < ra.size) throw new FailedPreconditionError(`short read: ${offset} of ${ra.size} bytes`);
}

const option = (m: Mount, name: string): string | undefined =>
  m.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);

/**
 * containerd's "walking" differ: Apply unpacks a layer (tar, gzip or zstd, OCI or Docker
 * media types) from the content store; on a single overlay mount it writes straight into
 * the upper directory with overlay whiteouts (the lower directories give parent
 * directories their attributes), else it mounts and applies with plain deletions. Compare
 * walks two mount sets and commits the compressed layer with its uncompressed digest.
 */
export class WalkingDiffer implements Differ {
  constructor(
    private readonly content: Provider & ContentStore,
    /** Where applies run: worker threads, so the daemon's own thread stays free for its calls. */
    private readonly pool: ApplyPool = defaultApplyPool(),
  ) {}

  async apply(ctx: Context, desc: Descriptor, mounts: Mount[]): Promise<Descriptor> {
    if (!desc?.digest) throw new InvalidArgumentError('apply: descriptor digest must not be empty');
    validateDigest(desc.digest);
    if (!isLayerMediaType(desc.mediaType)) {
      throw new NotImplementedError(
        `failed to get stream processor for ${desc.mediaType}: no processor for media-type: not implemented`,
      );
    }
    if (!Array.isArray(mounts) || mounts.length === 0)
      throw new InvalidArgumentError('apply: no mounts given');
    const ra = await this.content.readerAt(ctx, desc);
    try {
      const stream = readBlob(ra, ctx.signal);
      const opts = { mediaType: desc.mediaType, signal: ctx.signal };
      let result: { size: number; digest: Digest };
      const m = mounts[0]!;
      const upper = mounts.length === 1 && m.type === 'overlay' ? option(m, 'upperdir') : undefined;
      if (upper !== undefined) {
        const lower = option(m, 'lowerdir');
        result = await this.pool.apply(stream, upper, {
          ...opts,
          whiteouts: 'overlay',
          parents: lower ? lower.split(':') : [],
        });
      } else if (mounts.length === 1 && m.type === 'bind' && !m.options.includes('ro') && !m.target) {
        // A writable bind of one directory: the same tree without a mount.
        result = await this.pool.apply(stream, m.source, opts);
      } else {
        result = await withTempMount(mounts, (root) => this.pool.apply(stream, root, opts));
      }
      return { mediaType: MediaTypes.ociLayer, digest: result.digest, size: result.size };
    } finally {
      await ra.close();
    }
  }

  async compare(
    ctx: Context,
    lower: Mount[],
    upper: Mount[],
    opts: CompareOptions = {},
  ): Promise<Descriptor> {
    const mediaType = opts.mediaType || MediaTypes.ociLayerGzip;
    try {
      layerCompression(mediaType);
    } catch {
      throw new NotImplementedError(`unsupported diff media type: ${mediaType}: not implemented`);
    }
    if (!Array.isArray(upper) || upper.length === 0)
      throw new InvalidArgumentError('diff: no upper mounts given');
    return writeDiff(ctx, lower ?? [], upper, this.content, {
      mediaType,
      ref: opts.ref || undefined,
      labels: opts.labels,
      signal: ctx.signal,
    });
  }
}
