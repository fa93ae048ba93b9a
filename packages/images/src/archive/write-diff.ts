import { createHash, randomUUID } from 'node:crypto';
import {
  type Context,
  type Descriptor,
  type Digest,
  type Ingester,
  isAlreadyExists,
  type Labels,
  type Manager,
  type Mount,
} from '@berth/api';
import { withTempMount } from '@berth/sys';
import { type CompressOptions, compressStream } from './compression';
import { diffDirectories } from './diff';
import { layerCompression, MediaTypes } from './media-types';

/** The label containerd puts on a compressed layer: the digest of its uncompressed tar. */
export const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';

export interface WriteDiffOptions {
  /** Layer media type; picks the compression. Default OCI tar+gzip (as containerd). */
  mediaType?: string;
  /** Ingest ref (default a random one). */
  ref?: string;
  /** Labels for the committed blob (the uncompressed label is added). */
  labels?: Labels;
  compression?: CompressOptions;
  signal?: AbortSignal;
}

/** Mounts made read-only, as containerd's WithReadonlyTempMount does. */
export function readonlyMounts(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) => {
    if (m.type === 'overlay') {
      const upper = m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
      const options = m.options
        .filter((o) => !o.startsWith('upperdir=') && !o.startsWith('workdir='))
        .map((o) =>
          upper && o.startsWith('lowerdir=') ? `lowerdir=${upper}:${o.slice('lowerdir='.length)}` : o,
        );
      return { ...m, options };
    }
    return { ...m, options: [...m.options.filter((o) => o !== 'rw' && o !== 'ro'), 'ro'] };
  });
}

/** The directories a mount list shows, uppermost first, when it is a plain bind or overlay. */
function layersOf(mounts: readonly Mount[]): string[] | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === 'bind') return [m.source];
  if (m.type !== 'overlay') return undefined;
  const upper = m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
  const lower =
    m.options
      .find((o) => o.startsWith('lowerdir='))
      ?.slice('lowerdir='.length)
      .split(':') ?? [];
  return upper ? [upper, ...lower] : lower;
}

/**
 * When upper is an overlay whose lower layers are exactly what `lower` shows, its upperdir
 * alone holds the diff: no need to walk and compare both trees.
 */
function overlayUpperDir(lower: readonly Mount[], upper: readonly Mount[]): string | undefined {
  const up = layersOf(upper);
  if (!up || upper[0]!.type !== 'overlay' || !upper[0]!.options.some((o) => o.startsWith('upperdir=')))
    return undefined;
  const below = lower.length === 0 ? [] : layersOf(lower);
  if (!below || below.length !== up.length - 1 || below.some((d, i) => d !== up[i + 1])) return undefined;
  return up[0];
}

async function withOptionalMount<T>(
  mounts: readonly Mount[],
  fn: (root: string | undefined) => Promise<T>,
): Promise<T> {
  if (mounts.length === 0) return fn(undefined);
  return withTempMount(readonlyMounts(mounts), fn);
}

/**
 * Computes the layer between two mount sets, compresses it, and commits it to the content
 * store with `containerd.io/uncompressed=<diffID>`; returns its descriptor. The Diff
 * service's Diff call (containerd's walking differ).
 */
export async function writeDiff(
  ctx: Context,
  lower: readonly Mount[],
  upper: readonly Mount[],
  content: Ingester & Partial<Pick<Manager, 'info' | 'update'>>,
  opts: WriteDiffOptions = {},
): Promise<Descriptor> {
  const mediaType = opts.mediaType ?? MediaTypes.ociLayerGzip;
  const compression = layerCompression(mediaType);
  const signal = opts.signal ?? ctx.signal;
  const upperDir = overlayUpperDir(lower, upper);
  const commitFrom = async (stream: AsyncIterable<Buffer>): Promise<Descriptor> => {
    const uncompressed = createHash('sha256');
    const plain = (async function* () {
      for await (const chunk of stream) {
        uncompressed.update(chunk);
        yield chunk as Buffer;
      }
    })();
    const compressed = createHash('sha256');
    let size = 0;
    const writer = await content.writer(ctx, {
      ref: opts.ref ?? `diff-${randomUUID()}`,
      desc: { mediaType },
    });
    try {
      for await (const chunk of compressStream(compression, plain, opts.compression)) {
        compressed.update(chunk);
        size += chunk.length;
        await writer.write(chunk);
      }
      const digest: Digest = `sha256:${compressed.digest('hex')}`;
      const diffID: Digest = `sha256:${uncompressed.digest('hex')}`;
      try {
        await writer.commit(size, digest, { labels: { ...opts.labels, [UNCOMPRESSED_LABEL]: diffID } });
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
        // Already there (the same change diffed before): make sure it carries the label.
        if (content.info && content.update) {
          const info = await content.info(ctx, digest);
          if (info.labels[UNCOMPRESSED_LABEL] === undefined) {
            await content.update(ctx, { digest, labels: { [UNCOMPRESSED_LABEL]: diffID } }, [
              `labels.${UNCOMPRESSED_LABEL}`,
            ]);
          }
        }
      }
      return { mediaType, digest, size };
    } finally {
      await writer.close();
    }
  };
  return withOptionalMount(lower, (lowerRoot) => {
    if (upperDir !== undefined) {
      return commitFrom(diffDirectories(lowerRoot, upperDir, { upperKind: 'overlay', signal }));
    }
    // The tar is consumed while upper is still mounted.
    return withTempMount(readonlyMounts(upper), (upperRoot) =>
      commitFrom(diffDirectories(lowerRoot, upperRoot, { signal })),
    );
  });
}
