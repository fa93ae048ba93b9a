/**
 * What the CLI reads of an image through the content store, as containerd's client does:
 * the manifest for this host's platform, its config, size and platforms (what `ctr images
 * ls` shows), and the chain id of its layers (the snapshot an unpacked image leaves).
 */
import { createHash } from 'node:crypto';
import type { Context, Descriptor, Platform } from '@berth/api';
import type { Client } from '@berth/client';
import { api } from './runtime';

const MT = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
} as const;

/** Manifests and indexes are small; a larger blob is refused rather than buffered. */
const MAX_JSON_BLOB = 4 << 20;

export const isIndex = (mt: string): boolean => mt === MT.ociIndex || mt === MT.dockerList;
export const isManifest = (mt: string): boolean => mt === MT.ociManifest || mt === MT.dockerManifest;
export const isConfig = (mt: string): boolean => mt === MT.ociConfig || mt === MT.dockerConfig;

/** containerd's platforms.Normalize for os and architecture (variants as containerd spells them). */
export function normalizePlatform(p: Platform): Platform {
  let arch = (p.architecture ?? '').toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (arch) {
    case 'i386':
      arch = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '8' || variant === 'v8') variant = '';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (['5', '6', '8'].includes(variant)) variant = `v${variant}`;
      break;
  }
  const out: Platform = { os: (p.os ?? '').toLowerCase(), architecture: arch };
  if (variant) out.variant = variant;
  return out;
}

/** `os/arch[/variant]`, as platforms.Format. */
export const formatPlatform = (p: Platform): string =>
  [p.os || 'unknown', p.architecture || 'unknown', ...(p.variant ? [p.variant] : [])].join('/');

/** This host's platform (linux/<arch>), normalised. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return normalizePlatform({ os: process.platform, architecture: arch[process.arch] ?? process.arch });
}

function matches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return true;
  const n = normalizePlatform(have);
  return (
    n.os === want.os && n.architecture === want.architecture && (n.variant ?? '') === (want.variant ?? '')
  );
}

/** Reads a small blob whole. */
export async function readBlob(
  client: Client,
  ctx: Context,
  desc: Pick<Descriptor, 'digest' | 'size'>,
): Promise<Buffer> {
  if (desc.size > MAX_JSON_BLOB) {
    throw new (api().InvalidArgumentError)(
      `blob ${desc.digest}: ${desc.size} bytes is too large to read as JSON`,
    );
  }
  const chunks: Buffer[] = [];
  for await (const chunk of client.content.read(ctx, desc.digest)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function readJson<T>(client: Client, ctx: Context, desc: Descriptor): Promise<T> {
  const data = await readBlob(client, ctx, desc);
  try {
    return JSON.parse(data.toString()) as T;
  } catch (e) {
    throw new (api().InvalidArgumentError)(
      `blob ${desc.digest} (${desc.mediaType}): invalid JSON: ${(e as Error).message}`,
    );
  }
}

interface IndexJson {
  manifests?: Descriptor[];
}
interface ManifestJson {
  config?: Descriptor;
  layers?: Descriptor[];
}
interface ConfigJson {
  os?: string;
  architecture?: string;
  variant?: string;
  rootfs?: { diff_ids?: string[] };
}

/**
 * The image's size for this platform, as containerd's image.Size: the index, the one
 * manifest chosen for the platform, its config and layers.
 */
export async function imageSize(
  client: Client,
  ctx: Context,
  target: Descriptor,
  platform = hostPlatform(),
): Promise<number> {
  let size = target.size;
  if (isIndex(target.mediaType)) {
    const index = await readJson<IndexJson>(client, ctx, target);
    const chosen = (index.manifests ?? []).find((m) => matches(platform, m.platform));
    if (chosen) size += await imageSize(client, ctx, chosen, platform);
  } else if (isManifest(target.mediaType)) {
    const manifest = await readJson<ManifestJson>(client, ctx, target);
    for (const d of [...(manifest.config ? [manifest.config] : []), ...(manifest.layers ?? [])])
      size += d.size;
  }
  return size;
}

/** Every platform the image provides, as containerd's images.Platforms. */
export async function imagePlatforms(client: Client, ctx: Context, target: Descriptor): Promise<Platform[]> {
  if (target.platform) {
    const p = target.platform;
    return p.os === 'unknown' || p.architecture === 'unknown' ? [] : [p];
  }
  if (isIndex(target.mediaType)) {
    const index = await readJson<IndexJson>(client, ctx, target);
    const out: Platform[] = [];
    for (const m of index.manifests ?? []) out.push(...(await imagePlatforms(client, ctx, m)));
    return out;
  }
  if (isManifest(target.mediaType)) {
    const manifest = await readJson<ManifestJson>(client, ctx, target);
    return manifest.config ? imagePlatforms(client, ctx, manifest.config) : [];
  }
  if (isConfig(target.mediaType)) {
    const config = await readJson<ConfigJson>(client, ctx, target);
    return [normalizePlatform({ os: config.os ?? '', architecture: config.architecture ?? '' })];
  }
  return [];
}

/** The manifest for the platform under target (itself when it is a manifest). */
export async function resolveManifest(
  client: Client,
  ctx: Context,
  target: Descriptor,
  platform = hostPlatform(),
): Promise<{ desc: Descriptor; manifest: ManifestJson }> {
  if (isManifest(target.mediaType))
    return { desc: target, manifest: await readJson<ManifestJson>(client, ctx, target) };
  if (isIndex(target.mediaType)) {
    const index = await readJson<IndexJson>(client, ctx, target);
    for (const m of index.manifests ?? []) {
      if ((isManifest(m.mediaType) || isIndex(m.mediaType)) && matches(platform, m.platform)) {
        return resolveManifest(client, ctx, m, platform);
      }
    }
    throw new (api().NotFoundError)(
      `no manifest for platform ${formatPlatform(platform)} in ${target.digest}: not found`,
    );
  }
  throw new (api().InvalidArgumentError)(`unexpected media type ${target.mediaType} for ${target.digest}`);
}

/** The image's config blob and the chain id of its layers (the parent of a container's snapshot). */
export async function imageConfig(
  client: Client,
  ctx: Context,
  target: Descriptor,
): Promise<{ blob: Buffer; chainId: string }> {
  const { desc, manifest } = await resolveManifest(client, ctx, target);
  if (!manifest.config) throw new (api().InvalidArgumentError)(`manifest ${desc.digest} has no config`);
  const blob = await readBlob(client, ctx, manifest.config);
  const config = JSON.parse(blob.toString()) as ConfigJson;
  return { blob, chainId: chainId(config.rootfs?.diff_ids ?? []) };
}

/** identity.ChainID: the first diff id, then sha256("<parent> <diff id>") for each next one. */
export function chainId(diffIds: readonly string[]): string {
  let chain = '';
  for (const d of diffIds) {
    chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  }
  return chain;
}

/** ctr's progress.Bytes: binary units with one decimal ("1.5 KiB", "512.0 B"). */
export function binarySize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}
