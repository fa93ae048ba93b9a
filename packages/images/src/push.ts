import {
  type ContentStore,
  type Context,
  type Descriptor,
  FailedPreconditionError,
  isNotFound,
  NotFoundError,
  readBlob,
} from '@berth/api';
import { mergeLabels } from './fetch';
import { appendDistributionSource, distributionSourceKey, parseIndex, parseManifest } from './image/manifest';
import { isIndexType, isManifestType } from './image/media-types';
import { type PlatformSpec, platformMatcher } from './platforms';
import { selectManifests } from './pull';
import { formatReference, type ImageReference, parseReference } from './reference';
import { RegistryClient, type RegistryClientOptions, type RemoteRepository } from './remotes/registry';
import { Limiter } from './single-flight';
import { readContent } from './unpack';

export type PushStatus = 'exists' | 'mounted' | 'uploading' | 'done';

export interface PushEvent {
  digest: string;
  mediaType: string;
  status: PushStatus;
  offset: number;
  total: number;
}

export interface PushOptions {
  content: ContentStore;
  client?: RegistryClient;
  registry?: RegistryClientOptions;
  /** Which manifests of an index to push (default all; the index itself is pushed as it is). */
  platform?: PlatformSpec;
  /** Upload in PATCH chunks of this many bytes (default: one PUT per blob). */
  chunkSize?: number;
  /** Blobs uploaded at once (default 3). */
  maxConcurrentUploads?: number;
  onProgress?: (e: PushEvent) => void;
}

/** containerd's selectRepositoryMountCandidate: the other repository sharing the longest path prefix. */
export function mountCandidate(sourceLabel: string | undefined, target: string): string | undefined {
  if (!sourceLabel) return undefined;
  const components = target.split('/');
  let best: string | undefined;
  let bestLen = -1;
  for (const repo of sourceLabel.split(',')) {
    if (repo === '' || repo === target) continue;
    const parts = repo.split('/');
    let n = 0;
    while (n < components.length && n < parts.length && components[n] === parts[n]) n++;
    if (n >= bestLen) {
      bestLen = n;
      best = repo;
    }
  }
  return best;
}

interface Walked {
  blobs: Descriptor[];
  /** Manifests and indexes, children before parents; the target last. */
  manifests: Array<{ desc: Descriptor; data: Buffer }>;
}

async function walk(
  ctx: Context,
  content: ContentStore,
  target: Descriptor,
  platform: PlatformSpec | undefined,
): Promise<Walked> {
  const out: Walked = { blobs: [], manifests: [] };
  const seen = new Set<string>();
  const matcher = platformMatcher(platform ?? 'all');
  const all = platform === undefined || platform === 'all';
  const visit = async (desc: Descriptor): Promise<void> => {
    if (seen.has(desc.digest)) return;
    seen.add(desc.digest);
    if (!isManifestType(desc.mediaType) && !isIndexType(desc.mediaType)) {
      out.blobs.push(desc);
      return;
    }
    let data: Buffer;
    try {
      data = await readBlob(content, ctx, desc);
    } catch (e) {
      if (isNotFound(e)) {
        throw new NotFoundError(
          `${desc.mediaType} ${desc.digest}${desc.platform ? ` (${desc.platform.os}/${desc.platform.architecture})` : ''}: not in the content store; pull it first or push one platform`,
        );
      }
      throw e;
    }
    if (isIndexType(desc.mediaType)) {
      for (const child of selectManifests(parseIndex(data, desc.digest).manifests, matcher, all))
        await visit(child);
    } else {
      const m = parseManifest(data, desc.digest);
      for (const child of [m.config, ...m.layers]) await visit(child);
    }
    out.manifests.push({ desc, data });
  };
  await visit(target);
  return out;
}

async function pushBlob(
  ctx: Context,
  repo: RemoteRepository,
  content: ContentStore,
  desc: Descriptor,
  opts: PushOptions,
): Promise<void> {
  const emit = (status: PushStatus, offset: number) =>
    opts.onProgress?.({ digest: desc.digest, mediaType: desc.mediaType, status, offset, total: desc.size });
  const host = repo.hostsWith('push')[0]!;
  let info: Awaited<ReturnType<ContentStore['info']>>;
  try {
    info = await content.info(ctx, desc.digest);
  } catch (e) {
    if (isNotFound(e)) {
      throw new NotFoundError(
        `${desc.mediaType} ${desc.digest}: not in the content store (was the image fully pulled?)`,
      );
    }
    throw e;
  }
  if (await repo.blobExists(host, desc.digest, ctx.signal)) {
    emit('exists', desc.size);
    return;
  }
  const from = mountCandidate(info.labels[distributionSourceKey(repo.ref.domain)], repo.ref.path);
  const started = await repo.startUpload(host, desc.digest, from, ctx.signal);
  if (started.mounted) {
    emit('mounted', desc.size);
    return;
  }
  emit('uploading', 0);
  await repo.upload(host, started.location, desc, (offset) => readFrom(ctx, content, desc, offset), {
    chunkSize: opts.chunkSize,
    signal: ctx.signal,
    onProgress: (n) => emit('uploading', n),
  });
  emit('done', desc.size);
}

async function* readFrom(
  ctx: Context,
  content: ContentStore,
  desc: Descriptor,
  offset: number,
): AsyncGenerator<Buffer> {
  let skip = offset;
  for await (const chunk of readContent(ctx, content, desc)) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    yield skip > 0 ? chunk.subarray(skip) : chunk;
    skip = 0;
  }
}

/**
 * Pushes an image to a registry: every blob first (skipped when the registry has it,
 * mounted from another repository of the same registry when the distribution-source label
 * names one, uploaded otherwise), then manifests children first, the target last under the
 * reference's tag (or its digest).
 */
export async function push(
  ctx: Context,
  reference: string | ImageReference,
  target: Descriptor,
  opts: PushOptions,
): Promise<void> {
  const ref = typeof reference === 'string' ? parseReference(reference) : reference;
  const client = opts.client ?? new RegistryClient(opts.registry);
  const repo = await client.repository(ref);
  if (repo.hostsWith('push').length === 0) {
    throw new FailedPreconditionError(`${formatReference(ref)}: no host configured for push`);
  }
  const host = repo.hostsWith('push')[0]!;
  const walked = await walk(ctx, opts.content, target, opts.platform);
  const limiter = new Limiter(opts.maxConcurrentUploads ?? 3);
  await Promise.all(walked.blobs.map((b) => limiter.run(() => pushBlob(ctx, repo, opts.content, b, opts))));
  for (const { desc, data } of walked.manifests) {
    const object = desc.digest === target.digest ? (ref.tag ?? desc.digest) : desc.digest;
    if (ref.digest && desc.digest === target.digest && ref.digest !== target.digest) {
      throw new FailedPreconditionError(
        `${formatReference(ref)}: the reference's digest is not the image's ${target.digest}`,
      );
    }
    await repo.putManifest(host, object, desc, data, ctx.signal);
    opts.onProgress?.({
      digest: desc.digest,
      mediaType: desc.mediaType,
      status: 'done',
      offset: desc.size,
      total: desc.size,
    });
  }
  // Remember where the blobs now live, so a later push to this registry can mount them.
  const key = distributionSourceKey(ref.domain);
  for (const d of [...walked.blobs, ...walked.manifests.map((m) => m.desc)]) {
    const info = await opts.content.info(ctx, d.digest);
    const value = appendDistributionSource(info.labels[key], ref.path);
    if (value !== info.labels[key]) await mergeLabels(ctx, opts.content, d.digest, { [key]: value });
  }
}
