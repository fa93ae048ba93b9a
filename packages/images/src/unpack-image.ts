import {
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  isNotFound,
  type LeaseManager,
  NotFoundError,
  NotImplementedError,
  type Provider,
  readBlob,
  type Snapshotter,
  withLease,
} from '@berth/api';
import { chainIds, parseImageConfig, parseIndex, parseManifest } from './image/manifest';
import { isIndexType, isManifestType } from './image/media-types';
import { type PlatformSpec, platformMatcher } from './platforms';
import { createPullLease, selectManifests } from './pull';
import { type Applier, labelUnpackedConfig, mountApplier, type UnpackEvent, unpackLayer } from './unpack';

export interface UnpackImageOptions {
  content: ContentStore;
  snapshotter: Snapshotter;
  /** The name used in gc labels and lease resources (default `overlayfs`). */
  snapshotterName?: string;
  /** How layers are applied (default: `mountApplier(content)`); the daemon passes its Diff service. */
  applier?: Applier;
  /** When given (and ctx has no lease), the unpack runs under a lease of its own. */
  leases?: LeaseManager;
  /** Which manifest of an index to unpack (default this host's platform). */
  platform?: PlatformSpec;
  onEvent?: (e: UnpackEvent) => void;
}

export interface UnpackImageResult {
  manifest: Digest;
  /** The chain ID of the top layer: the snapshot a container's rootfs is prepared from. */
  chainId: Digest;
  /** Layers applied now (the others were already unpacked). */
  applied: number;
}

/** The manifest of `target` for the platform: the target itself, or the best match of an index (nested ones too). */
export async function manifestForPlatform(
  ctx: Context,
  content: Provider,
  target: Descriptor,
  platform: PlatformSpec | undefined,
  depth = 0,
): Promise<Descriptor> {
  if (isManifestType(target.mediaType)) return target;
  if (!isIndexType(target.mediaType) || depth > 4)
    throw new NotImplementedError(`${target.digest}: cannot unpack media type ${target.mediaType}`);
  const index = parseIndex(await readBlob(content, ctx, target), target.digest);
  const matcher = platformMatcher(platform);
  const [best] = selectManifests(index.manifests, matcher, false).filter(
    (d) => isManifestType(d.mediaType) || isIndexType(d.mediaType),
  );
  if (!best)
    throw new NotFoundError(`no manifest for platform ${matcher.description} in index ${target.digest}`);
  return manifestForPlatform(ctx, content, best, platform, depth + 1);
}

/**
 * Unpacks an image whose blobs are in the content store (an import, a pull without unpack)
 * into a snapshotter under containerd's chain-ID keys, and labels its config with the
 * `gc.ref.snapshot.<name>` that keeps the snapshots alive. Layers already unpacked are kept.
 */
export async function unpackImage(
  ctx: Context,
  target: Descriptor,
  opts: UnpackImageOptions,
): Promise<UnpackImageResult> {
  let uctx = ctx;
  let ownLease: string | undefined;
  if (opts.leases && !ctx.lease) {
    ownLease = await createPullLease(ctx, opts.leases);
    uctx = withLease(ctx, ownLease);
  }
  try {
    const manifestDesc = await manifestForPlatform(uctx, opts.content, target, opts.platform);
    const manifest = parseManifest(await readBlob(opts.content, uctx, manifestDesc), manifestDesc.digest);
    const config = parseImageConfig(
      await readBlob(opts.content, uctx, manifest.config),
      manifest.config.digest,
    );
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new FailedPreconditionError(
        `manifest ${manifestDesc.digest}: number of layers and diffIDs don't match: ${manifest.layers.length} != ${diffIds.length}`,
      );
    }
    if (diffIds.length === 0)
      throw new FailedPreconditionError(`manifest ${manifestDesc.digest}: image has no layers`);
    const chain = chainIds(diffIds);
    const u = {
      snapshotter: opts.snapshotter,
      snapshotterName: opts.snapshotterName ?? 'overlayfs',
      applier: opts.applier ?? mountApplier(opts.content),
      content: opts.content,
      leases: opts.leases,
      onEvent: opts.onEvent,
    };
    let applied = 0;
    for (let i = 0; i < chain.length; i++) {
      const layer = manifest.layers[i]!;
      const r = await unpackLayer(
        uctx,
        u,
        layer,
        diffIds[i]!,
        chain[i]!,
        i > 0 ? chain[i - 1]! : '',
        async () => {
          try {
            await opts.content.info(uctx, layer.digest);
          } catch (e) {
            if (isNotFound(e))
              throw new NotFoundError(`layer ${layer.digest} of ${manifestDesc.digest}: content not found`);
            throw e;
          }
        },
      );
      if (r === 'unpacked') applied++;
    }
    const top = chain[chain.length - 1]!;
    await labelUnpackedConfig(uctx, u, manifest.config.digest, top);
    return { manifest: manifestDesc.digest, chainId: top, applied };
  } finally {
    if (ownLease) await opts.leases!.delete(ctx, ownLease).catch(() => undefined);
  }
}
