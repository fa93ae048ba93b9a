import { type Context, type Descriptor, type Image, isNotFound, NotFoundError, readBlob } from '@berth/api';
import {
  chainId,
  formatReference,
  type ImageConfig,
  manifestForPlatform,
  parseImageConfig,
  parseManifest,
} from '@berth/images';
import type { CriDeps } from '../deps';
import { isDigest, lookupId, sortReferences, tryParseReference } from './references';

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
  /** An image record of it (the first of `references`). */
  record: Image;
  manifest: Descriptor;
  config: ImageConfig & { config?: RuntimeImageConfig };
  /** The snapshot a container's rootfs is prepared from (chain ID of the layers). */
  chainId: string;
  /** Every record name of the image (tags, repo digests, the id), in containerd's order. */
  references: string[];
  /** Bytes of the target (index), manifest, config and layers, as containerd reports. */
  size: number;
  /** The config as stored (the verbose ImageStatus shows it). */
  rawConfig: Record<string, unknown>;
}

interface TargetInfo {
  id: string;
  manifest: Descriptor;
  config: ResolvedImage['config'];
  rawConfig: Record<string, unknown>;
  chainId: string;
  size: number;
}

/** What a target descriptor leads to; content is immutable, so it is read once per digest. */
const targetCache = new WeakMap<object, Map<string, Promise<TargetInfo>>>();

async function readTarget(ctx: Context, deps: CriDeps, target: Descriptor): Promise<TargetInfo> {
  const manifest = await manifestForPlatform(ctx, deps.content, target, undefined);
  const m = parseManifest(await readBlob(deps.content, ctx, manifest), manifest.digest);
  const blob = await readBlob(deps.content, ctx, m.config);
  const config = parseImageConfig(blob, m.config.digest) as ResolvedImage['config'];
  let size = manifest.size + m.config.size + m.layers.reduce((n, l) => n + l.size, 0);
  if (target.digest !== manifest.digest) size += target.size;
  return {
    id: m.config.digest,
    manifest,
    config,
    rawConfig: JSON.parse(Buffer.from(blob).toString('utf8')),
    chainId: chainId(config.rootfs.diff_ids),
    size,
  };
}

function targetInfo(ctx: Context, deps: CriDeps, target: Descriptor): Promise<TargetInfo> {
  let m = targetCache.get(deps.content);
  if (!m) {
    m = new Map();
    targetCache.set(deps.content, m);
  }
  const key = `${target.digest}|${target.mediaType}`;
  let p = m.get(key);
  if (!p) {
    p = readTarget(ctx, deps, target);
    m.set(key, p);
    p.catch(() => m.delete(key));
  }
  return p;
}

/** Reads what a container needs of the image record `record` (its other references unknown). */
export async function readImage(ctx: Context, deps: CriDeps, record: Image): Promise<ResolvedImage> {
  const t = await targetInfo(ctx, deps, record.target);
  return { ...t, record, references: [record.name] };
}

/**
 * Every image of the k8s.io namespace, as the CRI sees them: records grouped by image id
 * (config digest). Records whose content is missing (a pull without its blobs) are skipped.
 */
export async function listCriImages(ctx: Context, deps: CriDeps): Promise<Map<string, ResolvedImage>> {
  const records = await deps.images.list(ctx);
  const read = await Promise.all(
    records.map(async (record) => {
      try {
        return { record, t: await targetInfo(ctx, deps, record.target) };
      } catch (e) {
        deps.log.debug(`cri: image ${record.name} skipped: ${(e as Error).message}`);
        return undefined;
      }
    }),
  );
  const byId = new Map<string, { t: TargetInfo; records: Image[] }>();
  for (const r of read) {
    if (!r) continue;
    const g = byId.get(r.t.id);
    if (g) g.records.push(r.record);
    else byId.set(r.t.id, { t: r.t, records: [r.record] });
  }
  const out = new Map<string, ResolvedImage>();
  for (const [id, { t, records }] of byId) {
    const references = sortReferences(records.map((r) => r.name));
    const first = references[0];
    const record = records.find((r) => r.name === first) ?? records[0]!;
    // The image's content as the reference listed first points at it.
    const main =
      record.target.digest === records[0]!.target.digest ? t : await targetInfo(ctx, deps, record.target);
    out.set(id, { ...main, record, references });
  }
  return out;
}

/**
 * The image a reference or id names in the k8s.io namespace, as containerd's CRI resolves
 * it (localResolve): `busybox`, `docker.io/library/busybox:latest`, `busybox@sha256:...`,
 * the id `sha256:<config digest>` or a unique prefix of its hex. NotFound naming the
 * reference when there is none.
 */
export async function resolveImage(ctx: Context, deps: CriDeps, reference: string): Promise<ResolvedImage> {
  const images = await listCriImages(ctx, deps);
  let id: string | undefined;
  if (isDigest(reference)) id = images.has(reference) ? reference : undefined;
  else {
    const ref = tryParseReference(reference);
    if (ref) {
      const name = formatReference(ref);
      for (const img of images.values())
        if (img.references.includes(name)) {
          id = img.id;
          break;
        }
    }
  }
  if (id === undefined) {
    try {
      id = lookupId(images.keys(), reference);
    } catch (e) {
      if (isNotFound(e)) throw new NotFoundError(`image "${reference}" not found`);
      throw e;
    }
  }
  return images.get(id)!;
}
