import { randomBytes } from 'node:crypto';
import { readdirSync, renameSync } from 'node:fs';
import {
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  isAlreadyExists,
  isNotFound,
  type Labels,
  type LeaseManager,
  type Mount,
  type Provider,
  SNAPSHOT_GC_REF_PREFIX,
  type Snapshotter,
} from '@berth/api';
import { withTempMount } from '@berth/sys';
import { type ApplyOptions, applyLayer as applyInThread, inheritParentAttributes } from './archive/apply';
import type { ApplyPool } from './archive/apply-pool';
import { MediaTypes } from './archive/media-types';
import { isOverlayOpaque, setOverlayOpaque } from './archive/whiteouts';
import { SNAPSHOT_REF_LABEL, UNCOMPRESSED_LABEL_KEY } from './image/manifest';
import { flights } from './single-flight';

/**
 * Applies a layer onto mounts and answers the descriptor of the uncompressed diff (its
 * digest is the diffID): containerd's diff.Applier. The daemon plugs its Diff service here.
 */
export interface Applier {
  apply(ctx: Context, desc: Descriptor, mounts: Mount[]): Promise<Descriptor>;
  /**
   * Optional: applies the layer into an empty directory the way an overlay upper directory
   * holds it (whiteouts as 0/0 devices, opaque xattrs), without its lower layers. Lets a
   * pull apply a layer before its parent is unpacked (see unpackLayers).
   */
  stage?(ctx: Context, desc: Descriptor, dir: string): Promise<StagedLayer>;
}

export interface StagedLayer {
  /** The uncompressed diff (its digest is the diffID). */
  diff: Descriptor;
  /** Directories created without an entry of their own, to take attributes from the lowers. */
  createdParents: string[];
}

/** Reads a committed blob as a stream of chunks. */
export async function* readContent(
  ctx: Context,
  provider: Provider,
  desc: Pick<Descriptor, 'digest'>,
  chunkSize = 1 << 20,
): AsyncGenerator<Buffer> {
  const ra = await provider.readerAt(ctx, desc);
  try {
    for (let off = 0; off < ra.size; ) {
      const b = await ra.readAt(off, Math.min(chunkSize, ra.size - off));
      if (b.length === 0) break;
      off += b.length;
      yield b;
    }
  } finally {
    await ra.close();
  }
}

function overlayLayers(m: Mount): { upper: string; lowers: string[] } | undefined {
  if (m.type !== 'overlay') return undefined;
  const upper = m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
  if (!upper) return undefined;
  const lower = m.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length);
  return { upper, lowers: lower ? lower.split(':') : [] };
}

/**
 * The library's applier: reads the layer from `content` and applies it with applyLayer.
 * A single overlay mount is applied straight into its upper dir (overlay whiteouts, parent
 * attributes from the lowers), a single read-write bind into its source, anything else
 * through a temporary mount (root needed), as containerd's walking differ does.
 */
export function mountApplier(
  content: Provider,
  options: Omit<ApplyOptions, 'mediaType' | 'signal'> & {
    /** Apply on these worker threads instead of the caller's (see ApplyPool). */
    pool?: ApplyPool;
  } = {},
): Applier {
  const { pool, ...opts } = options;
  const applyLayer: typeof applyInThread = pool ? (s, t, o) => pool.apply(s, t, o) : applyInThread;
  return {
    async apply(ctx, desc, mounts) {
      const stream = readContent(ctx, content, desc);
      const base: ApplyOptions = { ...opts, mediaType: desc.mediaType, signal: ctx.signal };
      let res: Awaited<ReturnType<typeof applyLayer>>;
      const ov = mounts.length === 1 ? overlayLayers(mounts[0]!) : undefined;
      if (ov) {
        res = await applyLayer(stream, ov.upper, { ...base, whiteouts: 'overlay', parents: ov.lowers });
      } else if (mounts.length === 1 && mounts[0]!.type === 'bind' && !mounts[0]!.options.includes('ro')) {
        res = await applyLayer(stream, mounts[0]!.source, base);
      } else {
        res = await withTempMount(mounts, (root) => applyLayer(stream, root, base));
      }
      return { mediaType: MediaTypes.ociLayer, digest: res.digest, size: res.size };
    },
    async stage(ctx, desc, dir) {
      const res = await applyLayer(readContent(ctx, content, desc), dir, {
        ...opts,
        mediaType: desc.mediaType,
        signal: ctx.signal,
        whiteouts: 'overlay',
        recordParents: true,
      });
      return {
        diff: { mediaType: MediaTypes.ociLayer, digest: res.digest, size: res.size },
        createdParents: res.createdParents ?? [],
      };
    },
  };
}

export interface UnpackEvent {
  layer: Digest;
  chainId: Digest;
  status: 'started' | 'done' | 'exists';
}

export interface LayerUnpacker {
  snapshotter: Snapshotter;
  /** The name used in `containerd.io/gc.ref.snapshot.<name>` and lease resources. */
  snapshotterName: string;
  applier: Applier;
  /** For the uncompressed and snapshot gc labels. */
  content: { update: import('@berth/api').Manager['update'] };
  leases?: LeaseManager;
  onEvent?: (e: UnpackEvent) => void;
}

/** containerd's snapshots.UnpackKeyFormat: `extract-<unique> <chainID>`. */
function unpackKey(chainId: Digest): string {
  return `extract-${Date.now()}${randomBytes(4).toString('hex')} ${chainId}`;
}

/** Annotations `containerd.io/snapshot/...` on a layer become labels of its snapshot. */
function inheritedLabels(desc: Descriptor): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(desc.annotations ?? {}))
    if (k.startsWith('containerd.io/snapshot/')) out[k] = v;
  return out;
}

async function exists(ctx: Context, sn: Snapshotter, key: string): Promise<boolean> {
  try {
    await sn.stat(ctx, key);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

async function holdInLease(ctx: Context, u: LayerUnpacker, chainId: string): Promise<void> {
  if (!u.leases || !ctx.lease) return;
  await u.leases.addResource(ctx, ctx.lease, { id: chainId, type: `snapshots/${u.snapshotterName}` });
}

export interface UnpackLayerOptions {
  /** Resolves when the parent snapshot is committed (default: it already is). */
  parentReady?: () => Promise<unknown>;
  /**
   * Apply the layer into a parentless snapshot while the parent is still being unpacked,
   * then move the result into the real one (needs `applier.stage` and an overlay snapshotter;
   * anything else falls back to applying once the parent is there).
   */
  stage?: boolean;
}

interface Staged {
  key: string;
  dir: string;
  layer: StagedLayer;
}

/** Applies the layer into a fresh parentless snapshot; undefined when that is not a plain directory. */
async function stageLayer(
  ctx: Context,
  u: LayerUnpacker,
  layer: Descriptor,
  chainId: Digest,
): Promise<Staged | undefined> {
  const key = `stage-${Date.now()}${randomBytes(4).toString('hex')} ${chainId}`;
  const mounts = await u.snapshotter.prepare(ctx, key, '');
  const m = mounts[0];
  if (mounts.length !== 1 || m?.type !== 'bind' || m.options.includes('ro')) {
    await u.snapshotter.remove(ctx, key).catch(() => undefined);
    return undefined;
  }
  try {
    return { key, dir: m.source, layer: await u.applier.stage!(ctx, layer, m.source) };
  } catch (e) {
    await u.snapshotter.remove(ctx, key).catch(() => undefined);
    throw e;
  }
}

/**
 * Moves a staged layer into the upper directory of an overlay extraction snapshot (same
 * filesystem: one rename per top-level entry), keeps an opaque root, and gives implicitly
 * created parents the lowers' attributes. False when the mounts are not an overlay.
 */
function moveStaged(staged: Staged, mounts: Mount[]): boolean {
  const ov = mounts.length === 1 ? overlayLayers(mounts[0]!) : undefined;
  if (!ov || readdirSync(ov.upper).length > 0) return false;
  for (const name of readdirSync(staged.dir)) renameSync(`${staged.dir}/${name}`, `${ov.upper}/${name}`);
  if (isOverlayOpaque(staged.dir)) setOverlayOpaque(ov.upper);
  for (const rel of staged.layer.createdParents) inheritParentAttributes(ov.upper, rel, ov.lowers);
  return true;
}

/**
 * Unpacks layer `i` into the snapshot named by its chain ID (parent: the chain ID below),
 * once per process for concurrent pulls. `ready` resolves when the layer's blob is in the
 * content store. Returns whether the snapshot was made here or found.
 */
export async function unpackLayer(
  ctx: Context,
  u: LayerUnpacker,
  layer: Descriptor,
  diffId: Digest,
  chainId: Digest,
  parent: Digest | '',
  ready: () => Promise<unknown>,
  opts: UnpackLayerOptions = {},
): Promise<'unpacked' | 'exists'> {
  const key = `unpack:${ctx.namespace ?? ''}:${u.snapshotterName}:${chainId}`;
  const { value, shared } = await flights.run(u.snapshotter, key, async () => {
    if (await exists(ctx, u.snapshotter, chainId)) {
      u.onEvent?.({ layer: layer.digest, chainId, status: 'exists' });
      return 'exists' as const;
    }
    await ready();
    u.onEvent?.({ layer: layer.digest, chainId, status: 'started' });
    const staged =
      opts.stage && u.applier.stage && parent ? await stageLayer(ctx, u, layer, chainId) : undefined;
    try {
      if (staged && staged.layer.diff.digest !== diffId) {
        throw new FailedPreconditionError(
          `layer ${layer.digest}: wrong diff id calculated on extraction: got ${staged.layer.diff.digest}, image config says ${diffId}`,
        );
      }
      await opts.parentReady?.();
      const labels = { ...inheritedLabels(layer), [SNAPSHOT_REF_LABEL]: chainId };
      let extractKey = '';
      let mounts: Mount[] | undefined;
      for (let attempt = 0; attempt < 3 && !mounts; attempt++) {
        extractKey = unpackKey(chainId);
        try {
          mounts = await u.snapshotter.prepare(ctx, extractKey, parent, { labels });
        } catch (e) {
          if (!isAlreadyExists(e)) throw e;
          if (await exists(ctx, u.snapshotter, chainId)) return 'exists' as const;
        }
      }
      if (!mounts) throw new FailedPreconditionError(`unable to prepare extraction snapshot for ${chainId}`);
      try {
        if (!staged || !moveStaged(staged, mounts)) {
          const diff = await u.applier.apply(ctx, layer, mounts);
          if (diff.digest !== diffId) {
            throw new FailedPreconditionError(
              `layer ${layer.digest}: wrong diff id calculated on extraction: got ${diff.digest}, image config says ${diffId}`,
            );
          }
        }
        try {
          await u.snapshotter.commit(ctx, chainId, extractKey, { labels });
        } catch (e) {
          if (!isAlreadyExists(e)) throw e;
          await u.snapshotter.remove(ctx, extractKey).catch(() => undefined);
          return 'exists' as const;
        }
      } catch (e) {
        await u.snapshotter.remove(ctx, extractKey).catch(() => undefined);
        throw e;
      }
    } finally {
      if (staged) await u.snapshotter.remove(ctx, staged.key).catch(() => undefined);
    }
    // Set once the apply has verified the uncompressed digest (as containerd's unpacker).
    await u.content.update(ctx, { digest: layer.digest, labels: { [UNCOMPRESSED_LABEL_KEY]: diffId } }, [
      `labels.${UNCOMPRESSED_LABEL_KEY}`,
    ]);
    u.onEvent?.({ layer: layer.digest, chainId, status: 'done' });
    return 'unpacked' as const;
  });
  if (shared) await holdInLease(ctx, u, chainId);
  return value;
}

/** Roots the unpacked chain from the image config, as containerd: `gc.ref.snapshot.<name>=<chainID>`. */
export async function labelUnpackedConfig(
  ctx: Context,
  u: LayerUnpacker,
  config: Digest,
  topChainId: Digest,
): Promise<void> {
  const key = `${SNAPSHOT_GC_REF_PREFIX}${u.snapshotterName}`;
  await u.content.update(ctx, { digest: config, labels: { [key]: topChainId } }, [`labels.${key}`]);
}
