import { type Context, type Descriptor, type Image, NotFoundError, readBlob } from '@berth/api';
import {
  chainId,
  type ImageConfig,
  manifestForPlatform,
  normalizeReference,
  parseImageConfig,
  parseManifest,
} from '@berth/images';
import type { CriDeps } from '../deps';

/** The part of an OCI image config's `config` the CRI builds containers from. */
export interface RuntimeImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Volumes?: Record<string, unknown>;
  StopSignal?: string;
  Labels?: Record<string, string>;
}

/** An image as pods and containers use it: found in the k8s.io namespace, unpacked. */
export interface ResolvedImage {
  /** The image id the CRI reports: the config's digest (sha256:...). */
  id: string;
  /** The image record found (its name is the reference asked for, normalized). */
  record: Image;
  manifest: Descriptor;
  config: ImageConfig & { config?: RuntimeImageConfig };
  /** The snapshot a container's rootfs is prepared from (chain ID of the layers). */
  chainId: string;
}

/** Reads what a container needs of the image record `record`. */
export async function readImage(ctx: Context, deps: CriDeps, record: Image): Promise<ResolvedImage> {
  const manifest = await manifestForPlatform(ctx, deps.content, record.target, undefined);
  const m = parseManifest(await readBlob(deps.content, ctx, manifest), manifest.digest);
  const config = parseImageConfig(
    await readBlob(deps.content, ctx, m.config),
    m.config.digest,
  ) as ResolvedImage['config'];
  return { id: m.config.digest, record, manifest, config, chainId: chainId(config.rootfs.diff_ids) };
}

/**
 * The image a reference names in the k8s.io namespace (a tag or digest reference, in any
 * spelling the kubelet uses); NotFound naming the reference when there is none.
 */
export async function resolveImage(ctx: Context, deps: CriDeps, reference: string): Promise<ResolvedImage> {
  let name: string;
  try {
    name = normalizeReference(reference);
  } catch {
    name = reference;
  }
  let record: Image;
  try {
    record = await deps.images.get(ctx, name);
  } catch (e) {
    if (e instanceof NotFoundError) throw new NotFoundError(`image "${reference}" not found`);
    throw e;
  }
  return readImage(ctx, deps, record);
}
