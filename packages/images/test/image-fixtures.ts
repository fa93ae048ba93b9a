import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { ContentStore, Context, Descriptor } from '@berth/api';
import { buildTar, ImageMediaTypes, MediaTypes, type TarInput } from '@berth/images';

export const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const T0 = 1_600_000_000;

export interface BuiltLayer {
  desc: Descriptor;
  data: Buffer;
  diffId: string;
}

export interface BuiltImage {
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  configBytes: Buffer;
  layers: BuiltLayer[];
  /** Every blob of the image by digest (manifest included). */
  blobs: Map<string, Buffer>;
}

export interface BuildOptions {
  /** Layer contents: tar entries, or a ready uncompressed tar. */
  layers: Array<TarInput[] | Buffer>;
  platform?: { os: string; architecture: string; variant?: string };
  format?: 'oci' | 'docker';
  compression?: 'gzip' | 'none';
  cmd?: string[];
}

/** A file entry with fixed owner and time. */
export function file(name: string, data: string | Buffer, mode = 0o644): TarInput {
  return {
    name,
    type: 'file',
    mode,
    uid: 0,
    gid: 0,
    mtime: T0,
    data: typeof data === 'string' ? Buffer.from(data) : data,
  };
}

export function dir(name: string, mode = 0o755): TarInput {
  return { name, type: 'dir', mode, uid: 0, gid: 0, mtime: T0 };
}

/** Incompressible bytes, so a layer's size on the wire is what the test asks for. */
export function noise(size: number): Buffer {
  return randomBytes(size);
}

/** busybox-static as a one-layer runnable root (`/bin/busybox`, `/bin/sh`). */
export function busyboxLayer(): TarInput[] {
  return [
    dir('bin/'),
    file('bin/busybox', readFileSync('/bin/busybox'), 0o755),
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox', mode: 0o777, uid: 0, gid: 0, mtime: T0 },
    { name: 'bin/true', type: 'symlink', linkname: 'busybox', mode: 0o777, uid: 0, gid: 0, mtime: T0 },
  ];
}

export function buildImage(opts: BuildOptions): BuiltImage {
  const docker = opts.format === 'docker';
  const gzip = (opts.compression ?? 'gzip') === 'gzip';
  const layerType = docker
    ? gzip
      ? MediaTypes.dockerLayerGzip
      : MediaTypes.dockerLayer
    : gzip
      ? MediaTypes.ociLayerGzip
      : MediaTypes.ociLayer;
  const blobs = new Map<string, Buffer>();
  const layers = opts.layers.map((l) => {
    const tar = Buffer.isBuffer(l) ? l : buildTar(l);
    const data = gzip ? gzipSync(tar, { level: 1 }) : tar;
    const desc = { mediaType: layerType, digest: sha256(data), size: data.length };
    blobs.set(desc.digest, data);
    return { desc, data, diffId: sha256(tar) };
  });
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: { Cmd: opts.cmd ?? ['/bin/sh'], Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      created: '2020-09-13T12:26:40Z',
    }),
  );
  const config = {
    mediaType: docker ? ImageMediaTypes.dockerConfig : ImageMediaTypes.ociConfig,
    digest: sha256(configBytes),
    size: configBytes.length,
  };
  blobs.set(config.digest, configBytes);
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: docker ? ImageMediaTypes.dockerManifest : ImageMediaTypes.ociManifest,
      config,
      layers: layers.map((l) => l.desc),
    }),
  );
  const manifest = {
    mediaType: docker ? ImageMediaTypes.dockerManifest : ImageMediaTypes.ociManifest,
    digest: sha256(manifestBytes),
    size: manifestBytes.length,
  };
  blobs.set(manifest.digest, manifestBytes);
  return { manifest, manifestBytes, config, configBytes, layers, blobs };
}

export interface BuiltIndex {
  index: Descriptor;
  indexBytes: Buffer;
  images: BuiltImage[];
  blobs: Map<string, Buffer>;
}

export function buildIndex(
  images: BuiltImage[],
  platforms: Array<{ os: string; architecture: string; variant?: string }>,
): BuiltIndex {
  const indexBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ImageMediaTypes.ociIndex,
      manifests: images.map((img, i) => ({ ...img.manifest, platform: platforms[i] })),
    }),
  );
  const index = { mediaType: ImageMediaTypes.ociIndex, digest: sha256(indexBytes), size: indexBytes.length };
  const blobs = new Map<string, Buffer>();
  for (const img of images) for (const [k, v] of img.blobs) blobs.set(k, v);
  blobs.set(index.digest, indexBytes);
  return { index, indexBytes, images, blobs };
}

/** Pushes blobs and a manifest with plain HTTP calls (independent of the code under test). */
export async function pushRaw(
  registryUrl: string,
  repo: string,
  tag: string,
  target: { desc: Descriptor; bytes: Buffer; manifests?: Array<{ desc: Descriptor; bytes: Buffer }> },
  blobs: Map<string, Buffer>,
  headers: Record<string, string> = {},
): Promise<void> {
  const manifestDigests = new Set([
    target.desc.digest,
    ...(target.manifests ?? []).map((m) => m.desc.digest),
  ]);
  for (const [digest, data] of blobs) {
    if (manifestDigests.has(digest)) continue;
    const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
    if (start.status !== 202) throw new Error(`upload start: ${start.status} ${await start.text()}`);
    const loc = new URL(start.headers.get('location')!, registryUrl);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/octet-stream' },
      body: data,
    });
    if (put.status !== 201) throw new Error(`upload put: ${put.status} ${await put.text()}`);
  }
  for (const m of [...(target.manifests ?? []), { desc: target.desc, bytes: target.bytes }]) {
    const ref = m.desc.digest === target.desc.digest ? tag : m.desc.digest;
    const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': m.desc.mediaType },
      body: m.bytes,
    });
    if (res.status !== 201) throw new Error(`manifest put: ${res.status} ${await res.text()}`);
  }
}

export function pushImage(
  registryUrl: string,
  repo: string,
  tag: string,
  img: BuiltImage,
  headers?: Record<string, string>,
) {
  return pushRaw(
    registryUrl,
    repo,
    tag,
    { desc: img.manifest, bytes: img.manifestBytes },
    img.blobs,
    headers,
  );
}

export function pushIndex(
  registryUrl: string,
  repo: string,
  tag: string,
  idx: BuiltIndex,
  headers?: Record<string, string>,
) {
  return pushRaw(
    registryUrl,
    repo,
    tag,
    {
      desc: idx.index,
      bytes: idx.indexBytes,
      manifests: idx.images.map((i) => ({ desc: i.manifest, bytes: i.manifestBytes })),
    },
    idx.blobs,
    headers,
  );
}

/** Writes every blob of an image into a content store (for push and export tests). */
export async function storeImage(
  ctx: Context,
  content: ContentStore,
  blobs: Map<string, Buffer>,
): Promise<void> {
  for (const [digest, data] of blobs) {
    const w = await content
      .writer(ctx, { ref: `test-${digest}`, desc: { digest, size: data.length } })
      .catch((e) => {
        if (e.code === 'ERR_ALREADY_EXISTS') return undefined;
        throw e;
      });
    if (!w) continue;
    await w.write(data);
    await w.commit(data.length, digest);
    await w.close();
  }
}
