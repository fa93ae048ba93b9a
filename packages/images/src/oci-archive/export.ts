import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import {
  type Context,
  type Descriptor,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  type Provider,
  parseDigest,
  readBlob,
} from '@berth/api';
import type { TarEntryInit } from '../archive/tar-format';
import { END_OF_ARCHIVE, tarEntryChunks } from '../archive/tar-writer';
import { descriptorJSON, type Image, parseIndex, parseManifest } from '../image/manifest';
import { isIndexType, isManifestType } from '../image/media-types';
import { type PlatformMatcher, type PlatformSpec, platformMatcher } from '../platforms';
import { familiarReference, parseReference } from '../reference';
import { readContent } from '../unpack';

/** containerd's annotation carrying an image's full name in an OCI index. */
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const OCI_LAYOUT_VERSION = '1.0.0';

export interface ExportOptions {
  content: Provider;
  /** Platforms of an index whose blobs are written (default this host's; 'all' for every one). */
  platform?: PlatformSpec;
  /** Also write Docker's manifest.json and repositories (default true, as ctr export). */
  dockerManifest?: boolean;
}

/** What to export: an image record, or a bare target with an optional name. */
export type ExportItem = Pick<Image, 'target'> & { name?: string };

interface TarRecord {
  header: TarEntryInit;
  body?: () => AsyncIterable<Buffer>;
}

/** The OCI ref name of a full name: its tag or digest (containerd's ociReferenceName). */
function ociRefName(name: string): string {
  try {
    const r = parseReference(name, { dockerDefaults: false });
    return r.digest ?? r.tag ?? name;
  } catch {
    return name;
  }
}

function blobPath(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `blobs/${algorithm}/${hex}`;
}

function sortPlatforms(list: Descriptor[], m: PlatformMatcher): Descriptor[] {
  return list
    .map((d, i) => ({ d, i }))
    .sort((a, b) => {
      if (!a.d.platform) return 1;
      if (!b.d.platform) return -1;
      if (m.less(a.d.platform, b.d.platform)) return -1;
      if (m.less(b.d.platform, a.d.platform)) return 1;
      return a.i - b.i;
    })
    .map((x) => x.d);
}

function fileRecord(name: string, data: Buffer, mode = 0o644): TarRecord {
  return {
    header: { name, type: 'file', mode, size: data.length, mtime: 0 },
    body: async function* () {
      yield data;
    },
  };
}

/**
 * Writes images as an OCI image layout archive (oci-layout, index.json, blobs/), with
 * Docker's manifest.json and repositories unless told not to, as `ctr images export`
 * does: `docker load` and `ctr images import` both read it.
 */
export async function* exportArchive(
  ctx: Context,
  items: readonly ExportItem[],
  opts: ExportOptions,
): AsyncGenerator<Buffer> {
  if (items.length === 0) throw new InvalidArgumentError('nothing to export: no images given');
  const all = opts.platform === 'all';
  const matcher = platformMatcher(opts.platform);
  const records = new Map<string, TarRecord>();
  const algorithms = new Set<string>();
  const indexManifests: Descriptor[] = [];
  // Docker manifest.json entries: manifest digest -> names.
  const docker = new Map<string, { desc: Descriptor; names: string[] }>();

  const addBlob = (d: Descriptor) => {
    const path = blobPath(d.digest);
    algorithms.add(parseDigest(d.digest).algorithm);
    if (records.has(path)) return;
    records.set(path, {
      header: { name: path, type: 'file', mode: 0o444, size: d.size, mtime: 0 },
      body: () => verified(ctx, opts.content, d),
    });
  };
  const addManifestTree = async (d: Descriptor) => {
    const data = await read(ctx, opts.content, d);
    addBlob(d);
    const m = parseManifest(data, d.digest);
    for (const c of [m.config, ...m.layers]) addBlob(c);
  };

  for (const item of items) {
    const desc = { ...item.target };
    if (item.name) {
      desc.annotations = {
        ...(desc.annotations ?? {}),
        [ANNOTATION_IMAGE_NAME]: item.name,
        [ANNOTATION_REF_NAME]: ociRefName(item.name),
      };
    }
    indexManifests.push(desc);
    if (isManifestType(desc.mediaType)) {
      await addManifestTree(desc);
      const entry = docker.get(desc.digest) ?? { desc, names: [] };
      if (item.name) entry.names.push(item.name);
      docker.set(desc.digest, entry);
    } else if (isIndexType(desc.mediaType)) {
      const data = await read(ctx, opts.content, desc);
      addBlob(desc);
      const matching: Descriptor[] = [];
      for (const m of parseIndex(data, desc.digest).manifests) {
        const matches = !m.platform || matcher.match(m.platform);
        if (matches) matching.push(m);
        if (!matches && !all) continue;
        if (isManifestType(m.mediaType)) await addManifestTree(m);
        else if (isIndexType(m.mediaType)) addBlob(m);
      }
      const best = sortPlatforms(
        matching.filter((m) => isManifestType(m.mediaType)),
        matcher,
      )[0];
      if (!best)
        throw new NotFoundError(
          `image ${item.name ?? desc.digest}: no manifest for platform ${matcher.description}`,
        );
      const entry = docker.get(best.digest) ?? { desc: best, names: [] };
      if (item.name) entry.names.push(item.name);
      docker.set(best.digest, entry);
    } else {
      throw new InvalidArgumentError(
        `${desc.digest}: only manifests and indexes may be exported, not ${desc.mediaType}`,
      );
    }
  }

  records.set(
    'oci-layout',
    fileRecord('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: OCI_LAYOUT_VERSION })), 0o444),
  );
  records.set(
    'index.json',
    fileRecord(
      'index.json',
      Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: indexManifests.map(descriptorJSON) })),
    ),
  );
  if (opts.dockerManifest !== false) {
    const entries: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
    const repositories: Record<string, Record<string, string>> = {};
    for (const { desc, names } of docker.values()) {
      const m = parseManifest(await read(ctx, opts.content, desc), desc.digest);
      const tags = names.flatMap((n) => {
        try {
          const ref = parseReference(n);
          if (!ref.tag) return [];
          return [familiarReference(ref)];
        } catch {
          return [];
        }
      });
      entries.push({
        Config: blobPath(m.config.digest),
        RepoTags: tags.length ? tags : null,
        Layers: m.layers.map((l) => blobPath(l.digest)),
      });
      const top = m.layers[m.layers.length - 1];
      for (const t of tags) {
        const i = t.lastIndexOf(':');
        if (!top) continue;
        const repo = t.slice(0, i);
        repositories[repo] = { ...(repositories[repo] ?? {}), [t.slice(i + 1)]: parseDigest(top.digest).hex };
      }
    }
    records.set('manifest.json', fileRecord('manifest.json', Buffer.from(JSON.stringify(entries))));
    if (Object.keys(repositories).length)
      records.set('repositories', fileRecord('repositories', Buffer.from(JSON.stringify(repositories))));
  }
  if (algorithms.size) {
    records.set('blobs/', { header: { name: 'blobs/', type: 'dir', mode: 0o755, mtime: 0 } });
    for (const a of algorithms)
      records.set(`blobs/${a}/`, { header: { name: `blobs/${a}/`, type: 'dir', mode: 0o755, mtime: 0 } });
  }
  for (const name of [...records.keys()].sort()) {
    const r = records.get(name)!;
    yield* tarEntryChunks(r.header, r.body?.());
  }
  yield END_OF_ARCHIVE;
}

/** exportArchive into a stream (a file, a socket), honouring back-pressure. */
export async function exportImages(
  ctx: Context,
  items: readonly ExportItem[],
  out: Writable,
  opts: ExportOptions,
): Promise<void> {
  for await (const chunk of exportArchive(ctx, items, opts)) {
    if (!out.write(chunk))
      await new Promise<void>((res, rej) => {
        out.once('drain', res);
        out.once('error', rej);
      });
  }
  await new Promise<void>((res, rej) => {
    out.once('error', rej);
    out.end(res);
  });
}

async function read(ctx: Context, content: Provider, d: Descriptor): Promise<Buffer> {
  try {
    return await readBlob(content, ctx, d);
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NOT_FOUND') {
      throw new NotFoundError(`${d.mediaType} ${d.digest}: not in the content store`, { cause: e });
    }
    throw e;
  }
}

/** A blob's bytes, checked against its digest as they are written (containerd does the same). */
async function* verified(ctx: Context, content: Provider, d: Descriptor): AsyncGenerator<Buffer> {
  const { algorithm } = parseDigest(d.digest);
  const h = createHash(algorithm);
  let n = 0;
  try {
    for await (const c of readContent(ctx, content, d)) {
      h.update(c);
      n += c.length;
      yield c;
    }
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NOT_FOUND') {
      throw new NotFoundError(`${d.mediaType} ${d.digest}: not in the content store`, { cause: e });
    }
    throw e;
  }
  const got = `${algorithm}:${h.digest('hex')}`;
  if (n !== d.size || got !== d.digest) {
    throw new FailedPreconditionError(
      `exporting ${d.digest}: content store gave ${n} bytes with digest ${got}`,
    );
  }
}
