import { createHash } from 'node:crypto';
import {
  type Descriptor,
  type Digest,
  InvalidArgumentError,
  type Labels,
  NotImplementedError,
  type Platform,
  validateDigest,
} from '@berth/api';
import {
  ImageMediaTypes,
  isConfigType,
  isIndexType,
  isLayerType,
  isManifestType,
  isSchema1Type,
} from './media-types';

/** An image as the image store keeps it (containerd's images.Image). */
export interface Image {
  /** The normalised reference: `docker.io/library/busybox:latest`. */
  name: string;
  /** The manifest or index the name points at. */
  target: Descriptor;
  labels: Labels;
  createdAt?: Date;
  updatedAt?: Date;
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Index {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of an image config this package reads. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  'os.version'?: string;
  rootfs: { type: string; diff_ids: Digest[] };
  [key: string]: unknown;
}

/** Largest manifest or index accepted from a registry or an archive (containerd's MaxManifestSize). */
export const MAX_MANIFEST_SIZE = 4 << 20;
/** Largest image config read into memory. */
export const MAX_CONFIG_SIZE = 64 << 20;

function malformed(what: string, digest: string | undefined, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`${what}${digest ? ` ${digest}` : ''}: malformed: ${why}`);
}

function parseJSON(data: Buffer, what: string, digest?: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    throw malformed(what, digest, `invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw malformed(what, digest, 'not a JSON object');
  return v as Record<string, unknown>;
}

/** Checks a descriptor found in JSON: media type, digest and size, as OCI requires. */
export function validateDescriptor(v: unknown, where: string): Descriptor {
  if (v === null || typeof v !== 'object')
    throw new InvalidArgumentError(`${where}: descriptor is not an object`);
  const d = v as Record<string, unknown>;
  if (typeof d.mediaType !== 'string' || d.mediaType === '') {
    throw new InvalidArgumentError(`${where}: descriptor has no mediaType`);
  }
  if (typeof d.digest !== 'string') throw new InvalidArgumentError(`${where}: descriptor has no digest`);
  try {
    validateDigest(d.digest);
  } catch (e) {
    throw new InvalidArgumentError(`${where}: ${(e as Error).message}`);
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new InvalidArgumentError(
      `${where}: descriptor ${d.digest} has invalid size ${JSON.stringify(d.size)}`,
    );
  }
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.annotations && typeof d.annotations === 'object')
    out.annotations = d.annotations as Record<string, string>;
  if (Array.isArray(d.urls)) out.urls = d.urls.filter((u): u is string => typeof u === 'string');
  if (d.platform && typeof d.platform === 'object') {
    const p = d.platform as Record<string, unknown>;
    const platform: Platform = { os: String(p.os ?? ''), architecture: String(p.architecture ?? '') };
    if (typeof p.variant === 'string' && p.variant) platform.variant = p.variant;
    if (typeof p['os.version'] === 'string') platform.osVersion = p['os.version'];
    if (Array.isArray(p['os.features'])) platform.osFeatures = p['os.features'] as string[];
    out.platform = platform;
  }
  return out;
}

/** Descriptor as OCI JSON (`os.version`, no undefined fields). */
export function descriptorJSON(d: Descriptor): Record<string, unknown> {
  const out: Record<string, unknown> = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls?.length) out.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length) out.annotations = d.annotations;
  if (d.platform) {
    const p: Record<string, unknown> = { architecture: d.platform.architecture, os: d.platform.os };
    if (d.platform.osVersion) p['os.version'] = d.platform.osVersion;
    if (d.platform.osFeatures?.length) p['os.features'] = d.platform.osFeatures;
    if (d.platform.variant) p.variant = d.platform.variant;
    out.platform = p;
  }
  return out;
}

export function parseManifest(data: Buffer, digest?: string): Manifest {
  const what = 'manifest';
  const v = parseJSON(data, what, digest);
  if (v.schemaVersion === 1)
    throw new NotImplementedError(`${what} ${digest ?? ''}: Docker schema 1 is not supported`);
  if (v.config === undefined) throw malformed(what, digest, 'no config');
  if (!Array.isArray(v.layers)) throw malformed(what, digest, 'layers is not an array');
  const where = `${what}${digest ? ` ${digest}` : ''}`;
  return {
    schemaVersion: Number(v.schemaVersion ?? 2),
    ...(typeof v.mediaType === 'string' ? { mediaType: v.mediaType } : {}),
    config: validateDescriptor(v.config, `${where} config`),
    layers: v.layers.map((l, i) => validateDescriptor(l, `${where} layer ${i}`)),
    ...(v.annotations && typeof v.annotations === 'object'
      ? { annotations: v.annotations as Record<string, string> }
      : {}),
  };
}

export function parseIndex(data: Buffer, digest?: string): Index {
  const what = 'index';
  const v = parseJSON(data, what, digest);
  if (!Array.isArray(v.manifests)) throw malformed(what, digest, 'manifests is not an array');
  const where = `${what}${digest ? ` ${digest}` : ''}`;
  return {
    schemaVersion: Number(v.schemaVersion ?? 2),
    ...(typeof v.mediaType === 'string' ? { mediaType: v.mediaType } : {}),
    manifests: v.manifests.map((m, i) => validateDescriptor(m, `${where} manifest ${i}`)),
    ...(v.annotations && typeof v.annotations === 'object'
      ? { annotations: v.annotations as Record<string, string> }
      : {}),
  };
}

export function parseImageConfig(data: Buffer, digest?: string): ImageConfig {
  const what = 'image config';
  const v = parseJSON(data, what, digest);
  const rootfs = v.rootfs as Record<string, unknown> | undefined;
  if (!rootfs || typeof rootfs !== 'object' || !Array.isArray(rootfs.diff_ids)) {
    throw malformed(what, digest, 'rootfs.diff_ids is missing');
  }
  rootfs.diff_ids.forEach((d, i) => {
    if (typeof d !== 'string') throw malformed(what, digest, `diff_ids[${i}] is not a string`);
    try {
      validateDigest(d);
    } catch (e) {
      throw malformed(what, digest, `diff_ids[${i}]: ${(e as Error).message}`);
    }
  });
  return v as unknown as ImageConfig;
}

/**
 * What kind of JSON a descriptor points at; a registry that answers with a generic type
 * (`application/json`) is understood by the document's own mediaType or shape.
 */
export function detectManifestType(mediaType: string, data: Buffer): string {
  if (isManifestType(mediaType) || isIndexType(mediaType)) return mediaType;
  if (isSchema1Type(mediaType))
    throw new NotImplementedError(`media type ${mediaType} (Docker schema 1) is not supported`);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    throw new InvalidArgumentError(
      `${mediaType || 'content'}: malformed: invalid JSON (${(e as Error).message})`,
    );
  }
  if (typeof v?.mediaType === 'string' && (isManifestType(v.mediaType) || isIndexType(v.mediaType)))
    return v.mediaType;
  if (v?.schemaVersion === 1) throw new NotImplementedError('Docker schema 1 manifests are not supported');
  if (Array.isArray(v?.manifests)) return ImageMediaTypes.ociIndex;
  if (v?.config !== undefined && Array.isArray(v?.layers)) return ImageMediaTypes.ociManifest;
  throw new InvalidArgumentError(
    `unsupported media type ${JSON.stringify(mediaType)}: not a manifest or index`,
  );
}

/** The descriptors a manifest or index points at (config first, then layers). */
export function childrenOf(mediaType: string, data: Buffer, digest?: string): Descriptor[] {
  if (isManifestType(mediaType)) {
    const m = parseManifest(data, digest);
    return [m.config, ...m.layers];
  }
  if (isIndexType(mediaType)) return parseIndex(data, digest).manifests;
  return [];
}

export const GC_REF_CONTENT_PREFIX = 'containerd.io/gc.ref.content';
export const DISTRIBUTION_SOURCE_PREFIX = 'containerd.io/distribution.source.';
export const SNAPSHOT_REF_LABEL = 'containerd.io/snapshot.ref';
export const UNCOMPRESSED_LABEL_KEY = 'containerd.io/uncompressed';

/** containerd's ChildGCLabels: the label (prefix) that roots a child from its parent. */
export function childGCLabel(desc: Pick<Descriptor, 'mediaType'>): string {
  const mt = desc.mediaType;
  if (isConfigType(mt)) return `${GC_REF_CONTENT_PREFIX}.config`;
  if (isManifestType(mt)) return `${GC_REF_CONTENT_PREFIX}.m.`;
  if (isLayerType(mt)) return `${GC_REF_CONTENT_PREFIX}.l.`;
  return `${GC_REF_CONTENT_PREFIX}.`;
}

/**
 * The labels a parent gets for its children (containerd's SetChildrenLabels):
 * `...config`, `...l.<i>`, `...m.<i>`, counting per label kind.
 */
export function childrenLabels(children: readonly Pick<Descriptor, 'mediaType' | 'digest'>[]): Labels {
  const labels: Labels = {};
  const counts = new Map<string, number>();
  for (const ch of children) {
    let key = childGCLabel(ch);
    const idx = counts.get(key) ?? 0;
    counts.set(key, idx + 1);
    if (idx > 0 || key.endsWith('.')) key = `${key}${idx}`;
    labels[key] = ch.digest;
  }
  return labels;
}

/** containerd's distribution source label key: the host without its port. */
export function distributionSourceKey(domain: string): string {
  const host = domain.startsWith('[')
    ? domain.slice(0, domain.indexOf(']') + 1)
    : domain.replace(/:\d+$/, '');
  return `${DISTRIBUTION_SOURCE_PREFIX}${host}`;
}

/** Adds a repository to a source label value: sorted, without duplicates, comma separated. */
export function appendDistributionSource(current: string | undefined, repo: string): string {
  const set = new Set((current ?? '').split(',').filter((s) => s !== ''));
  set.add(repo);
  return [...set].sort().join(',');
}

/** The chain IDs of a list of diff IDs (OCI image spec: chain(n) = sha256(chain(n-1) + " " + diff(n))). */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) {
    if (out.length === 0) out.push(d);
    else
      out.push(
        `sha256:${createHash('sha256')
          .update(`${out[out.length - 1]} ${d}`)
          .digest('hex')}`,
      );
  }
  return out;
}

export function chainId(diffIds: readonly Digest[]): Digest {
  if (diffIds.length === 0) throw new InvalidArgumentError('chain id of no layers');
  return chainIds(diffIds)[diffIds.length - 1]!;
}

/** The platform an image config declares. */
export function configPlatform(config: ImageConfig): Platform {
  const p: Platform = { os: config.os ?? '', architecture: config.architecture ?? '' };
  if (config.variant) p.variant = config.variant;
  if (config['os.version']) p.osVersion = config['os.version'];
  return p;
}

export { ImageMediaTypes };
