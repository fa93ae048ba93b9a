import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type TarEntry, writeTar } from './tar';

export { type TarEntry, writeTar } from './tar';

/**
 * Runnable test images built in memory, without the internet: layers as gzip tars with their
 * diffIDs, an image config, a manifest and optionally a multi-platform index; written out as
 * an OCI image layout (directory or tar) or a `docker save` archive, both of which
 * `ctr images import` accepts. Everything is deterministic: the same input gives the same
 * digests.
 */

/** Where busybox-static puts its binary on Debian. */
export const BUSYBOX_PATH = '/bin/busybox';
export const busyboxInstalled = (): boolean => existsSync(BUSYBOX_PATH);

/** Every layer entry's mtime, and the config's `created` (2020-09-13T12:26:40Z). */
export const FIXED_MTIME = 1_600_000_000;
const FIXED_CREATED = new Date(FIXED_MTIME * 1000).toISOString().replace('.000Z', 'Z');

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/** A file, directory, link or whiteout in a layer; parents are added when missing. */
export interface LayerEntry {
  /** Absolute or relative path in the image (`/etc/motd` or `etc/motd`). */
  path: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink';
  content?: string | Buffer;
  /** Permission bits (with setuid/setgid/sticky); default 0644 for files, 0755 for dirs. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Target of a symlink (as written) or hard link (a path in the layer). */
  target?: string;
}

/** A layer: the busybox root, entries, or a ready uncompressed tar. */
export type LayerInput = 'busybox' | readonly LayerEntry[] | { tar: Buffer };

/** The image config's `config` member: what runs. */
export interface ImageRunConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

export interface BuildImageOptions {
  layers: readonly LayerInput[];
  config?: ImageRunConfig;
  /** The image's platform; default this host's (linux/amd64 on x86-64). */
  platform?: Platform;
  /** OCI media types (default) or Docker schema 2 ones. */
  mediaTypes?: 'oci' | 'docker';
  /**
   * Put the image in an index (a manifest list for docker) next to small images for these
   * platforms, each with one layer holding `/platform`.
   */
  extraPlatforms?: readonly Platform[];
  /** Make an index even without extra platforms. */
  index?: boolean;
}

export interface BuiltLayer {
  desc: Descriptor;
  /** sha256 of the uncompressed tar, as rootfs.diff_ids lists it. */
  diffId: string;
  /** The uncompressed tar. */
  tar: Buffer;
}

export interface BuiltImage {
  mediaTypes: 'oci' | 'docker';
  platform: Platform;
  /** What a reference names: the index when there is one, else the manifest. */
  target: Descriptor;
  /** The manifest for `platform`. */
  manifest: Descriptor;
  config: Descriptor;
  /** The parsed config blob. */
  configJson: Record<string, unknown>;
  layers: BuiltLayer[];
  index?: Descriptor;
  /** Every manifest of the index with its platform (just `manifest` without an index). */
  manifests: Descriptor[];
  /** Every blob by digest: layers, configs, manifests, index. */
  blobs: Map<string, Buffer>;
}

export const sha256 = (data: Buffer | string): string =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** This host's platform as OCI names it. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    ia32: '386',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
  };
  const p: Platform = { os: 'linux', architecture: arch[process.arch] ?? process.arch };
  if (p.architecture === 'arm') p.variant = 'v7';
  return p;
}

export function file(path: string, content: string | Buffer, mode = 0o644): LayerEntry {
  return { path, type: 'file', content, mode };
}

export function dir(path: string, mode = 0o755): LayerEntry {
  return { path, type: 'dir', mode };
}

export function symlink(path: string, target: string): LayerEntry {
  return { path, type: 'symlink', target };
}

/** An OCI whiteout: `path` is deleted from the layers below. */
export function whiteout(path: string): LayerEntry {
  const clean = path.replace(/^\/+/, '');
  const slash = clean.lastIndexOf('/');
  return { path: `${clean.slice(0, slash + 1)}.wh.${clean.slice(slash + 1)}`, type: 'file', content: '' };
}

let applets: string[] | undefined;

/** The applet names busybox-static was built with (`busybox --list`). */
export function busyboxApplets(): string[] {
  applets ??= execFileSync(BUSYBOX_PATH, ['--list'])
    .toString()
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== 'busybox' && !s.includes('/'));
  return applets;
}

/**
 * A runnable root: /bin/busybox with a symlink per applet in /bin, /etc/passwd with root and
 * nobody, /etc/group, /root and a world-writable sticky /tmp.
 */
export function busyboxLayer(): LayerEntry[] {
  if (!busyboxInstalled()) throw new Error(`${BUSYBOX_PATH} is missing: install Debian's busybox-static`);
  return [
    dir('bin'),
    file('bin/busybox', readFileSync(BUSYBOX_PATH), 0o755),
    ...busyboxApplets().map((name) => symlink(`bin/${name}`, 'busybox')),
    dir('etc'),
    file(
      'etc/passwd',
      'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    ),
    file('etc/group', 'root:x:0:\nnobody:x:65534:\n'),
    dir('root', 0o700),
    dir('tmp', 0o1777),
  ];
}

function tarPath(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** The uncompressed tar of a layer's entries, parents first, fixed owners and times. */
export function layerTar(entries: readonly LayerEntry[]): Buffer {
  const out: TarEntry[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    const name = tarPath(e.path);
    if (name === '') throw new Error(`layer entry "${e.path}": empty path`);
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (!seen.has(parent)) {
        seen.add(parent);
        out.push({ name: parent, type: 'dir', mode: 0o755, mtime: FIXED_MTIME });
      }
    }
    const type = e.type ?? (e.target !== undefined ? 'symlink' : 'file');
    if ((type === 'symlink' || type === 'hardlink') && e.target === undefined) {
      throw new Error(`layer entry "${e.path}": a ${type} needs a target`);
    }
    seen.add(name);
    out.push({
      name,
      type,
      mode: e.mode,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: FIXED_MTIME,
      data: typeof e.content === 'string' ? Buffer.from(e.content) : e.content,
      linkname: type === 'hardlink' ? tarPath(e.target!) : e.target,
    });
  }
  return writeTar(out);
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function platformKey(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

interface Parts {
  manifest: Descriptor;
  config: Descriptor;
  configJson: Record<string, unknown>;
  layers: BuiltLayer[];
}

function buildManifest(
  layers: readonly LayerInput[],
  runConfig: ImageRunConfig | undefined,
  platform: Platform,
  docker: boolean,
  blobs: Map<string, Buffer>,
): Parts {
  const built = layers.map((input): BuiltLayer => {
    const tar =
      input === 'busybox'
        ? layerTar(busyboxLayer())
        : 'tar' in input
          ? input.tar
          : layerTar(input as LayerEntry[]);
    // Fixed header fields (no name, mtime 0) keep gzip output a function of the tar alone.
    const gz = gzipSync(tar, { level: 6 });
    const desc = {
      mediaType: docker ? MediaTypes.dockerLayerGzip : MediaTypes.ociLayerGzip,
      digest: sha256(gz),
      size: gz.length,
    };
    blobs.set(desc.digest, gz);
    return { desc, diffId: sha256(tar), tar };
  });
  const configJson: Record<string, unknown> = {
    created: FIXED_CREATED,
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: { ...runConfig },
    rootfs: { type: 'layers', diff_ids: built.map((l) => l.diffId) },
    history: built.map(() => ({ created: FIXED_CREATED, created_by: 'berth testkit buildImage' })),
  };
  const configBytes = json(configJson);
  const config = {
    mediaType: docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig,
    digest: sha256(configBytes),
    size: configBytes.length,
  };
  blobs.set(config.digest, configBytes);
  const manifestType = docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest;
  const manifestBytes = json({
    schemaVersion: 2,
    mediaType: manifestType,
    config,
    layers: built.map((l) => l.desc),
  });
  const manifest = { mediaType: manifestType, digest: sha256(manifestBytes), size: manifestBytes.length };
  blobs.set(manifest.digest, manifestBytes);
  return { manifest, config, configJson, layers: built };
}

/** Builds an image (and its index, if asked) in memory. */
export function buildImage(opts: BuildImageOptions): BuiltImage {
  const docker = opts.mediaTypes === 'docker';
  const platform = opts.platform ?? hostPlatform();
  const blobs = new Map<string, Buffer>();
  const main = buildManifest(opts.layers, opts.config, platform, docker, blobs);
  const image: BuiltImage = {
    mediaTypes: docker ? 'docker' : 'oci',
    platform,
    target: main.manifest,
    manifest: main.manifest,
    config: main.config,
    configJson: main.configJson,
    layers: main.layers,
    manifests: [main.manifest],
    blobs,
  };
  const extra = opts.extraPlatforms ?? [];
  if (extra.length === 0 && !opts.index) return image;
  const manifests: Descriptor[] = [{ ...main.manifest, platform }];
  for (const p of extra) {
    if (platformKey(p) === platformKey(platform))
      throw new Error(`extra platform ${platformKey(p)} is the image's own`);
    const other = buildManifest(
      [[file('platform', `${platformKey(p)}\n`)]],
      { Cmd: ['/bin/false'] },
      p,
      docker,
      blobs,
    );
    manifests.push({ ...other.manifest, platform: p });
  }
  const indexType = docker ? MediaTypes.dockerManifestList : MediaTypes.ociIndex;
  const indexBytes = json({ schemaVersion: 2, mediaType: indexType, manifests });
  const index = { mediaType: indexType, digest: sha256(indexBytes), size: indexBytes.length };
  blobs.set(index.digest, indexBytes);
  return { ...image, target: index, index, manifests };
}

const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';
const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

// The tag of a reference (`latest` when it has none); what OCI's ref.name holds.
function tagOf(ref: string): string {
  const name = ref.split('@')[0]!;
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(colon + 1) : 'latest';
}

/** The files of an OCI image layout naming `image.target` as refName. */
export function ociLayoutFiles(image: BuiltImage, refName: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  files.set('oci-layout', json({ imageLayoutVersion: '1.0.0' }));
  // containerd names an import by its own annotation and keeps the tag in OCI's.
  const index = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: [
      {
        ...image.target,
        annotations: { [IMAGE_NAME_ANNOTATION]: refName, [REF_NAME_ANNOTATION]: tagOf(refName) },
      },
    ],
  };
  files.set('index.json', json(index));
  for (const [digest, data] of [...image.blobs].sort(([a], [b]) => a.localeCompare(b))) {
    files.set(`blobs/sha256/${digest.slice('sha256:'.length)}`, data);
  }
  return files;
}

function archive(files: Map<string, Buffer>): Buffer {
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  for (const [name, data] of files) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ name: d, type: 'dir', mtime: FIXED_MTIME });
      }
    }
    entries.push({ name, type: 'file', data, mtime: FIXED_MTIME });
  }
  return writeTar(entries);
}

function writeFiles(dirPath: string, files: Map<string, Buffer>): void {
  for (const [name, data] of files) {
    const path = join(dirPath, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, data);
  }
}

/**
 * Writes the image as an OCI image layout naming it `refName`: a tar archive when `target`
 * ends in `.tar` (what `ctr images import` reads), else a directory.
 */
export function writeOciLayout(target: string, image: BuiltImage, refName: string): void {
  const files = ociLayoutFiles(image, refName);
  if (target.endsWith('.tar')) writeFileSync(target, archive(files));
  else writeFiles(target, files);
}

/**
 * The files of a `docker save` archive of the image's manifest (one platform): the config as
 * `<hex>.json`, each layer uncompressed as `<diffid hex>/layer.tar` with `VERSION` and `json`,
 * `manifest.json` with RepoTags, and `repositories`.
 */
export function dockerArchiveFiles(image: BuiltImage, repoTag: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const configName = `${image.config.digest.slice('sha256:'.length)}.json`;
  files.set(configName, image.blobs.get(image.config.digest)!);
  const layerNames: string[] = [];
  let parent: string | undefined;
  for (const layer of image.layers) {
    const id = layer.diffId.slice('sha256:'.length);
    files.set(`${id}/VERSION`, Buffer.from('1.0'));
    files.set(`${id}/json`, json({ id, ...(parent ? { parent } : {}), created: FIXED_CREATED }));
    files.set(`${id}/layer.tar`, layer.tar);
    layerNames.push(`${id}/layer.tar`);
    parent = id;
  }
  files.set('manifest.json', json([{ Config: configName, RepoTags: [repoTag], Layers: layerNames }]));
  const colon = repoTag.lastIndexOf(':');
  const [repo, tag] =
    colon > repoTag.lastIndexOf('/')
      ? [repoTag.slice(0, colon), repoTag.slice(colon + 1)]
      : [repoTag, 'latest'];
  if (parent) files.set('repositories', json({ [repo]: { [tag]: parent } }));
  return files;
}

/** Writes a `docker save` archive (tar) of the image tagged `repoTag` (e.g. `busybox:latest`). */
export function writeDockerArchive(tarPath: string, image: BuiltImage, repoTag: string): void {
  writeFileSync(tarPath, archive(dockerArchiveFiles(image, repoTag)));
}
