import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import {
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  LEASE_EXPIRE_LABEL,
  type LeaseManager,
  NotFoundError,
  NotImplementedError,
  parseDigest,
  readBlob,
  withLease,
} from '@berth/api';
import { detectCompression } from '../archive/compression';
import { MediaTypes } from '../archive/media-types';
import { readTar } from '../archive/tar-reader';
import { mergeLabels, storeBlob } from '../fetch';
import {
  childrenLabels,
  configPlatform,
  descriptorJSON,
  type Image,
  MAX_MANIFEST_SIZE,
  parseImageConfig,
  parseIndex,
  parseManifest,
} from '../image/manifest';
import { ImageMediaTypes, isIndexType, isManifestType } from '../image/media-types';
import { type PlatformSpec, platformMatcher } from '../platforms';
import { formatReference, parseReference } from '../reference';
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_LAYOUT_VERSION } from './export';

export interface ImportOptions {
  content: ContentStore;
  /** Platforms whose manifests become images (default this host's; 'all' for every one). */
  platform?: PlatformSpec;
  /** Names manifests that carry only an OCI tag (`<baseName>:<tag>`), as ctr's --base-name. */
  baseName?: string;
  /** Also record the archive's whole index under this name (ctr's --index-name). */
  indexName?: string;
  /** When given (and ctx has no lease), the import runs under a lease of its own. */
  leases?: LeaseManager;
  /** Called with each image record while the import's lease still holds the content. */
  saveImage?: (ctx: Context, image: Image) => Promise<unknown>;
}

export interface ImportResult {
  /** The archive's index (OCI), or one made for a Docker archive. */
  index: Descriptor;
  images: Image[];
}

/** Small JSON files of an archive are read into memory up to this size (containerd's jsonLimit). */
const JSON_LIMIT = 20 << 20;

interface Ingested {
  digest: Digest;
  size: number;
}

async function ingestEntry(
  ctx: Context,
  content: ContentStore,
  name: string,
  size: number,
  body: AsyncIterable<Buffer>,
): Promise<Ingested> {
  // Under blobs/<alg>/<hex> the digest is known: the store checks it at commit.
  const m = /^blobs\/(sha256|sha384|sha512)\/([a-f0-9]+)$/.exec(name);
  let expected: Digest | undefined;
  if (m) {
    try {
      expected = `${m[1]}:${m[2]}`;
      parseDigest(expected);
    } catch {
      expected = undefined;
    }
  }
  const ref = `import-${expected ?? `${Date.now()}-${randomBytes(6).toString('hex')}`}`;
  let w: Awaited<ReturnType<ContentStore['writer']>>;
  try {
    w = await content.writer(ctx, { ref, desc: expected ? { digest: expected, size } : { size } });
  } catch (e) {
    if (isAlreadyExists(e) && expected) {
      for await (const _ of body) {
        // skip the bytes we have
      }
      return { digest: expected, size };
    }
    throw e;
  }
  const hash = createHash(expected ? parseDigest(expected).algorithm : 'sha256');
  try {
    await w.truncate(0);
    for await (const chunk of body) {
      hash.update(chunk);
      await w.write(chunk);
    }
    const digest = `${expected ? parseDigest(expected).algorithm : 'sha256'}:${hash.digest('hex')}`;
    if (expected && digest !== expected) {
      throw new FailedPreconditionError(
        `archive entry ${name}: content has digest ${digest}, its name says ${expected}`,
      );
    }
    try {
      await w.commit(size, digest);
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
      await content.abort(ctx, ref).catch(() => undefined);
    }
    return { digest, size };
  } catch (e) {
    await w.truncate(0).catch(() => undefined);
    throw e;
  } finally {
    await w.close().catch(() => undefined);
  }
}

function parseJSONEntry<T>(data: Buffer, what: string): T {
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch (e) {
    throw new InvalidArgumentError(`archive ${what}: invalid JSON: ${(e as Error).message}`);
  }
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/** containerd's detectLayerMediaType for a Docker archive's layer files. */
async function dockerLayerType(ctx: Context, content: ContentStore, d: Ingested): Promise<string> {
  const ra = await content.readerAt(ctx, { digest: d.digest });
  try {
    const head = await ra.readAt(0, Math.min(16, ra.size));
    switch (detectCompression(head)) {
      case 'gzip':
        return MediaTypes.dockerLayerGzip;
      case 'zstd':
        return MediaTypes.ociLayerZstd;
      default:
        return MediaTypes.dockerLayer;
    }
  } finally {
    await ra.close();
  }
}

async function writeJSON(
  ctx: Context,
  content: ContentStore,
  mediaType: string,
  doc: unknown,
): Promise<Descriptor> {
  const data = Buffer.from(JSON.stringify(doc));
  const desc = {
    mediaType,
    digest: `sha256:${createHash('sha256').update(data).digest('hex')}`,
    size: data.length,
  };
  await storeBlob(ctx, content, desc, data);
  return desc;
}

/** Turns `docker save`'s manifest.json into Docker schema 2 manifests and an index naming them. */
async function dockerIndex(
  ctx: Context,
  content: ContentStore,
  entries: DockerManifestEntry[],
  files: Map<string, Ingested>,
): Promise<Descriptor> {
  if (!Array.isArray(entries)) throw new InvalidArgumentError('archive manifest.json: not a list');
  const manifests: Descriptor[] = [];
  for (const [i, e] of entries.entries()) {
    const find = (p: string, what: string) => {
      const f = files.get(posix.normalize(p));
      if (!f)
        throw new NotFoundError(
          `archive manifest.json entry ${i}: ${what} ${JSON.stringify(p)} not found in the archive`,
        );
      return f;
    };
    if (typeof e?.Config !== 'string' || !Array.isArray(e.Layers)) {
      throw new InvalidArgumentError(`archive manifest.json entry ${i}: needs Config and Layers`);
    }
    const cfg = find(e.Config, 'image config');
    const configDesc = { mediaType: ImageMediaTypes.dockerConfig, digest: cfg.digest, size: cfg.size };
    const layers: Descriptor[] = [];
    for (const l of e.Layers) {
      const f = find(l, 'layer');
      layers.push({ mediaType: await dockerLayerType(ctx, content, f), digest: f.digest, size: f.size });
    }
    const manifest = await writeJSON(ctx, content, ImageMediaTypes.dockerManifest, {
      schemaVersion: 2,
      mediaType: ImageMediaTypes.dockerManifest,
      config: configDesc,
      layers,
    });
    const config = parseImageConfig(await readBlob(content, ctx, configDesc), cfg.digest);
    const platform = configPlatform(config);
    if (platform.os) manifest.platform = platform;
    const tags = e.RepoTags ?? [];
    if (tags.length === 0) manifests.push(manifest);
    for (const t of tags) {
      let name: string;
      try {
        name = formatReference(parseReference(t));
      } catch (err) {
        throw new InvalidArgumentError(`archive manifest.json entry ${i}: ${(err as Error).message}`);
      }
      manifests.push({
        ...manifest,
        annotations: {
          [ANNOTATION_IMAGE_NAME]: name,
          [ANNOTATION_REF_NAME]: parseReference(name).tag ?? name,
        },
      });
    }
  }
  return writeJSON(ctx, content, ImageMediaTypes.ociIndex, {
    schemaVersion: 2,
    mediaType: ImageMediaTypes.ociIndex,
    manifests: manifests.map(descriptorJSON),
  });
}

function imageName(d: Descriptor, baseName?: string): string | undefined {
  const full = d.annotations?.[ANNOTATION_IMAGE_NAME];
  if (full) return full;
  const ref = d.annotations?.[ANNOTATION_REF_NAME];
  if (!ref) return undefined;
  // A bare tag needs a base name; anything that looks like a reference is one.
  if (/[/:@]/.test(ref)) {
    try {
      return formatReference(parseReference(ref));
    } catch {
      return undefined;
    }
  }
  return baseName ? formatReference(parseReference(`${baseName}:${ref}`)) : undefined;
}

/**
 * Imports an OCI image layout archive or a `docker save` archive (manifest.json, legacy
 * `<id>/layer.tar` layouts included) into the content store: every file is ingested and
 * checked against its digest, the index and manifests get containerd's gc labels, and one
 * image record per named manifest of the selected platform(s) is returned.
 */
export async function importArchive(
  ctx: Context,
  stream: AsyncIterable<Buffer>,
  opts: ImportOptions,
): Promise<ImportResult> {
  let ictx = ctx;
  let ownLease: string | undefined;
  if (opts.leases && !ctx.lease) {
    const lease = await opts.leases.create(ctx, {
      id: `berth-import-${Date.now()}-${randomBytes(4).toString('hex')}`,
      labels: { [LEASE_EXPIRE_LABEL]: new Date(Date.now() + 24 * 3600 * 1000).toISOString() },
    });
    ownLease = lease.id;
    ictx = withLease(ctx, ownLease);
  }
  try {
    return await importInLease(ictx, stream, opts);
  } finally {
    if (ownLease) await opts.leases!.delete(ctx, ownLease).catch(() => undefined);
  }
}

async function importInLease(
  ctx: Context,
  stream: AsyncIterable<Buffer>,
  opts: ImportOptions,
): Promise<ImportResult> {
  const { content } = opts;
  const files = new Map<string, Ingested>();
  const symlinks = new Map<string, string>();
  let layout: { imageLayoutVersion?: string } | undefined;
  let dockerManifest: DockerManifestEntry[] | undefined;
  let indexData: Buffer | undefined;

  for await (const entry of readTar(stream)) {
    const h = entry.header;
    const name = posix
      .normalize(h.name)
      .replace(/^(\.\/)+/, '')
      .replace(/\/$/, '');
    if (h.type === 'symlink') {
      symlinks.set(name, posix.join(posix.dirname(name), h.linkname ?? ''));
      continue;
    }
    if (h.type !== 'file') continue;
    if (
      name === 'oci-layout' ||
      name === 'manifest.json' ||
      name === 'index.json' ||
      name === 'repositories'
    ) {
      if (h.size > JSON_LIMIT)
        throw new InvalidArgumentError(`archive ${name}: ${h.size} bytes, more than ${JSON_LIMIT}`);
      const data = await entry.readAll();
      if (name === 'oci-layout') layout = parseJSONEntry(data, name);
      else if (name === 'manifest.json') dockerManifest = parseJSONEntry(data, name);
      else if (name === 'index.json') indexData = data;
      continue;
    }
    files.set(name, await ingestEntry(ctx, content, name, h.size, entry.body()));
  }
  for (const [name, target] of symlinks) {
    const f = files.get(posix.normalize(target));
    if (f) files.set(name, f);
  }

  let index: Descriptor;
  if (layout) {
    if (layout.imageLayoutVersion !== OCI_LAYOUT_VERSION) {
      throw new NotImplementedError(
        `archive oci-layout: unsupported OCI layout version ${JSON.stringify(layout.imageLayoutVersion)}`,
      );
    }
    if (!indexData)
      throw new InvalidArgumentError(`archive: missing index.json in OCI layout ${OCI_LAYOUT_VERSION}`);
    parseIndex(indexData, 'index.json');
    index = {
      mediaType: ImageMediaTypes.ociIndex,
      digest: `sha256:${createHash('sha256').update(indexData).digest('hex')}`,
      size: indexData.length,
    };
    await storeBlob(ctx, content, index, indexData);
  } else if (dockerManifest) {
    index = await dockerIndex(ctx, content, dockerManifest, files);
  } else {
    throw new InvalidArgumentError(
      'unrecognized image archive format: neither oci-layout nor manifest.json found',
    );
  }

  // Walk what the selected platforms need, labelling parents and checking every blob is here.
  const matcher = platformMatcher(opts.platform);
  const all = opts.platform === 'all';
  const images: Image[] = [];
  if (opts.indexName)
    images.push({ name: formatReference(parseReference(opts.indexName)), target: index, labels: {} });
  const top = parseIndex(await readBlob(content, ctx, index), index.digest).manifests.filter(
    (m) => !m.platform || matcher.match(m.platform),
  );
  await mergeLabels(ctx, content, index.digest, childrenLabels(top));
  for (const m of top) {
    const name = imageName(m, opts.baseName);
    if (name) images.push({ name, target: m, labels: {} });
  }
  const seen = new Set<string>();
  const visit = async (d: Descriptor): Promise<void> => {
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    if (isIndexType(d.mediaType)) {
      const children = parseIndex(await need(ctx, content, d), d.digest).manifests.filter((m) => {
        if (!m.platform || all) return true;
        return matcher.match(m.platform);
      });
      await mergeLabels(ctx, content, d.digest, childrenLabels(children));
      for (const c of children) await visit(c);
    } else if (isManifestType(d.mediaType)) {
      const data = await need(ctx, content, d);
      if (data.length > MAX_MANIFEST_SIZE) throw new InvalidArgumentError(`manifest ${d.digest}: too large`);
      const m = parseManifest(data, d.digest);
      await mergeLabels(ctx, content, d.digest, childrenLabels([m.config, ...m.layers]));
      for (const c of [m.config, ...m.layers]) await visit(c);
    } else {
      try {
        await content.info(ctx, d.digest);
      } catch (e) {
        if (isNotFound(e)) throw new NotFoundError(`archive is missing ${d.mediaType} ${d.digest}`);
        throw e;
      }
    }
  };
  for (const m of top) await visit(m);
  for (const img of images) if (opts.saveImage) await opts.saveImage(ctx, img);
  return { index, images };
}

async function need(ctx: Context, content: ContentStore, d: Descriptor): Promise<Buffer> {
  try {
    return await readBlob(content, ctx, d);
  } catch (e) {
    if (isNotFound(e)) throw new NotFoundError(`archive is missing ${d.mediaType} ${d.digest}`);
    throw e;
  }
}
