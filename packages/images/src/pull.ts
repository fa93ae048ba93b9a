import { randomBytes } from 'node:crypto';
import {
  type ContentStore,
  type Context,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  failpoint,
  isNotFound,
  type Labels,
  LEASE_EXPIRE_LABEL,
  type LeaseManager,
  NotFoundError,
  NotImplementedError,
  readBlob,
  type Snapshotter,
  withLease,
} from '@berth/api';
import { type BlobProgress, fetchBlob, mergeLabels, storeBlob } from './fetch';
import {
  appendDistributionSource,
  chainIds,
  childrenLabels,
  configPlatform,
  distributionSourceKey,
  type Image,
  type ImageConfig,
  MAX_CONFIG_SIZE,
  parseImageConfig,
  parseIndex,
  parseManifest,
} from './image/manifest';
import { isConfigType, isIndexType, isManifestType, isSchema1Type } from './image/media-types';
import {
  defaultPlatformMatcher,
  type PlatformMatcher,
  type PlatformSpec,
  platformMatcher,
} from './platforms';
import { formatReference, type ImageReference, parseReference } from './reference';
import { RegistryClient, type RegistryClientOptions, type RemoteRepository } from './remotes/registry';
import { flights, Limiter } from './single-flight';
import {
  type Applier,
  type LayerUnpacker,
  labelUnpackedConfig,
  mountApplier,
  type UnpackEvent,
  unpackLayer,
} from './unpack';

export type PullEvent =
  | { type: 'resolved'; name: string; desc: Descriptor }
  | ({ type: 'blob' } & BlobProgress)
  | ({ type: 'unpack' } & UnpackEvent);

export interface PullOptions {
  content: ContentStore;
  /** A configured client (auth, hosts, retries); or options to make one. */
  client?: RegistryClient;
  registry?: RegistryClientOptions;
  /** Which platform(s) of an index to pull; default this host's (linux/amd64 here). 'all' takes every one. */
  platform?: PlatformSpec;
  /** Unpack the layers into `snapshotter` (default true when a snapshotter is given). */
  unpack?: boolean;
  snapshotter?: Snapshotter;
  /** Name for gc labels and lease resources (default `overlayfs`). */
  snapshotterName?: string;
  /** How layers are applied (default: `mountApplier(content)`). */
  applier?: Applier;
  /** When given (and ctx has no lease), the pull runs under a lease of its own, released at the end. */
  leases?: LeaseManager;
  /** Labels for the image record. */
  labels?: Labels;
  /** Blobs downloaded at once (default 3, as containerd). */
  maxConcurrentDownloads?: number;
  /**
   * Apply each layer as soon as its blob is in, beside the layers below it, into a
   * parentless snapshot moved into place when the parent is committed. Needs an applier
   * with `stage` and an overlay snapshotter (others fall back to one layer at a time).
   */
  stageLayers?: boolean;
  onProgress?: (e: PullEvent) => void;
  /** Called with the image record while the pull's lease still holds the content (store it here). */
  saveImage?: (ctx: Context, image: Image) => Promise<unknown>;
}

export interface PullResult {
  image: Image;
  /** The manifests pulled (one per selected platform). */
  manifests: Descriptor[];
  /** The top chain ID of each unpacked manifest. */
  unpacked: Array<{ manifest: Digest; chainId: Digest; snapshotter: string }>;
}

interface PullContext {
  ctx: Context;
  repo: RemoteRepository;
  content: ContentStore;
  matcher: PlatformMatcher;
  unpackMatcher: PlatformMatcher;
  sourceKey: string;
  limiter: Limiter;
  unpacker?: LayerUnpacker;
  leases?: LeaseManager;
  emit: (e: PullEvent) => void;
  stageLayers: boolean;
  manifests: Descriptor[];
  unpacked: PullResult['unpacked'];
}

/** Creates a lease like containerd's client.WithLease: expiring after 24h should we die mid-pull. */
export async function createPullLease(ctx: Context, leases: LeaseManager): Promise<string> {
  const expire = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
  const lease = await leases.create(ctx, {
    id: `berth-pull-${Date.now()}-${randomBytes(4).toString('hex')}`,
    labels: { [LEASE_EXPIRE_LABEL]: expire },
  });
  return lease.id;
}

async function holdContent(p: PullContext, digest: Digest): Promise<void> {
  if (p.leases && p.ctx.lease)
    await p.leases.addResource(p.ctx, p.ctx.lease, { id: digest, type: 'content' });
}

/** Adds this repository to the blob's distribution source label (for cross-repo mounts on push). */
async function addSource(p: PullContext, digest: Digest): Promise<void> {
  const info = await p.content.info(p.ctx, digest);
  const value = appendDistributionSource(info.labels[p.sourceKey], p.repo.ref.path);
  if (value !== info.labels[p.sourceKey])
    await mergeLabels(p.ctx, p.content, digest, { [p.sourceKey]: value });
}

/** Reads a manifest/config from the store, or fetches (once per process) and stores it with labels. */
async function getJsonBlob(
  p: PullContext,
  desc: Descriptor,
  kind: 'manifest' | 'config',
  labelsOf: (data: Buffer) => Labels,
): Promise<Buffer> {
  const key = `fetch:${p.ctx.namespace ?? ''}:${desc.digest}`;
  const { value, shared } = await flights.run(p.content, key, async () => {
    let data: Buffer | undefined;
    try {
      data = await readBlob(p.content, p.ctx, desc);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (data) {
      p.emit({
        type: 'blob',
        digest: desc.digest,
        mediaType: desc.mediaType,
        offset: desc.size,
        total: desc.size,
        status: 'exists',
      });
      await mergeLabels(p.ctx, p.content, desc.digest, labelsOf(data));
      await addSource(p, desc.digest);
      return data;
    }
    p.emit({
      type: 'blob',
      digest: desc.digest,
      mediaType: desc.mediaType,
      offset: 0,
      total: desc.size,
      status: 'downloading',
    });
    const fetched =
      kind === 'manifest'
        ? await p.repo.fetchManifest(desc, p.ctx.signal)
        : await p.repo.fetchSmallBlob(desc, MAX_CONFIG_SIZE, p.ctx.signal);
    // Parse before storing: malformed JSON never reaches the store.
    const labels = { ...labelsOf(fetched), [p.sourceKey]: p.repo.ref.path };
    const r = await storeBlob(p.ctx, p.content, desc, fetched, labels);
    if (r === 'exists') await addSource(p, desc.digest);
    p.emit({
      type: 'blob',
      digest: desc.digest,
      mediaType: desc.mediaType,
      offset: desc.size,
      total: desc.size,
      status: 'done',
    });
    return fetched;
  });
  if (shared) await holdContent(p, desc.digest);
  return value;
}

/** Downloads a layer (once per process for concurrent pulls), labelled with its source. */
async function getLayer(p: PullContext, desc: Descriptor): Promise<void> {
  const key = `fetch:${p.ctx.namespace ?? ''}:${desc.digest}`;
  const { shared } = await flights.run(p.content, key, () =>
    p.limiter.run(async () => {
      const r = await fetchBlob(p.ctx, p.repo, p.content, desc, {
        labels: { [p.sourceKey]: p.repo.ref.path },
        onProgress: (bp) => p.emit({ type: 'blob', ...bp }),
      });
      if (r === 'exists') await addSource(p, desc.digest);
      await failpoint('pull.layer.fetched');
      return r;
    }),
  );
  if (shared) {
    await holdContent(p, desc.digest);
    p.emit({
      type: 'blob',
      digest: desc.digest,
      mediaType: desc.mediaType,
      offset: desc.size,
      total: desc.size,
      status: 'shared',
    });
  }
}

function checkSupported(desc: Descriptor): void {
  if (isSchema1Type(desc.mediaType)) {
    throw new NotImplementedError(`${desc.digest}: Docker schema 1 manifests are not supported`);
  }
}

/** containerd's FilterPlatforms + LimitManifests(1): the best-matching manifest(s) of an index. */
export function selectManifests(
  manifests: readonly Descriptor[],
  matcher: PlatformMatcher,
  all: boolean,
): Descriptor[] {
  const kept = manifests.filter((d) => !d.platform || matcher.match(d.platform));
  if (all) return kept;
  const ms = kept.filter((d) => isManifestType(d.mediaType) || isIndexType(d.mediaType));
  const others = kept.filter((d) => !(isManifestType(d.mediaType) || isIndexType(d.mediaType)));
  const sorted = ms
    .map((d, i) => ({ d, i }))
    .sort((a, b) => {
      if (!a.d.platform || !b.d.platform) return a.i - b.i;
      if (matcher.less(a.d.platform, b.d.platform)) return -1;
      if (matcher.less(b.d.platform, a.d.platform)) return 1;
      return a.i - b.i;
    })
    .map((x) => x.d);
  return [...sorted.slice(0, 1), ...others];
}

async function handle(p: PullContext, desc: Descriptor, all: boolean, depth = 0): Promise<void> {
  checkSupported(desc);
  if (depth > 4) throw new FailedPreconditionError(`${desc.digest}: indexes nested too deep`);
  if (isIndexType(desc.mediaType)) {
    const select = (data: Buffer) => selectManifests(parseIndex(data, desc.digest).manifests, p.matcher, all);
    const children = select(await getJsonBlob(p, desc, 'manifest', (data) => childrenLabels(select(data))));
    if (children.length === 0) {
      throw new NotFoundError(
        `${p.repo.name}: no manifest for platform ${p.matcher.description} in index ${desc.digest}`,
      );
    }
    await Promise.all(children.map((c) => handle(p, c, all, depth + 1)));
    return;
  }
  if (!isManifestType(desc.mediaType)) {
    throw new NotImplementedError(`${desc.digest}: unsupported media type ${desc.mediaType}`);
  }
  const manifest = parseManifest(
    await getJsonBlob(p, desc, 'manifest', (data) => {
      const m = parseManifest(data, desc.digest);
      return childrenLabels([m.config, ...m.layers]);
    }),
    desc.digest,
  );
  p.manifests.push(desc);
  if (!isConfigType(manifest.config.mediaType)) {
    throw new NotImplementedError(
      `manifest ${desc.digest}: unsupported config media type ${manifest.config.mediaType}`,
    );
  }
  const config: ImageConfig = parseImageConfig(
    await getJsonBlob(p, manifest.config, 'config', (data) => {
      parseImageConfig(data, manifest.config.digest);
      return {};
    }),
    manifest.config.digest,
  );
  const layers = manifest.layers;
  const diffIds = config.rootfs.diff_ids;
  // With every platform pulled, only the ones this host runs are unpacked.
  const unpacker = !all || p.unpackMatcher.match(configPlatform(config)) ? p.unpacker : undefined;
  if (!unpacker) {
    await Promise.all(layers.map((l) => getLayer(p, l)));
    return;
  }
  if (layers.length !== diffIds.length) {
    throw new FailedPreconditionError(
      `manifest ${desc.digest}: number of layers and diffIDs don't match: ${layers.length} != ${diffIds.length}`,
    );
  }
  if (layers.length === 0) return;
  const chain = chainIds(diffIds);
  // Layers below an existing snapshot need neither download nor apply (as containerd).
  let have = -1;
  for (let i = chain.length - 1; i >= 0; i--) {
    try {
      await unpacker.snapshotter.stat(p.ctx, chain[i]!);
      have = i;
      break;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  // Start every remaining download now; apply each layer as soon as it and its parents are in.
  const downloads = new Map<number, Promise<void>>();
  for (let i = have + 1; i < layers.length; i++) {
    const d = getLayer(p, layers[i]!);
    d.catch(() => undefined);
    downloads.set(i, d);
  }
  try {
    // Layer N waits for its blob and then for layer N-1; with staging, it is applied as
    // soon as its blob is in, beside the layers below it.
    const jobs: Promise<unknown>[] = [];
    let below: Promise<unknown> = Promise.resolve();
    for (let i = have + 1; i < layers.length; i++) {
      const parentDone = below;
      const job = unpackLayer(
        p.ctx,
        unpacker,
        layers[i]!,
        diffIds[i]!,
        chain[i]!,
        i > 0 ? chain[i - 1]! : '',
        () => downloads.get(i)!,
        { parentReady: () => parentDone, stage: p.stageLayers && i > have + 1 },
      ).then(async (r) => {
        await failpoint('pull.layer.unpacked');
        return r;
      });
      job.catch(() => undefined);
      jobs.push(job);
      below = job;
    }
    const settled = await Promise.allSettled(jobs);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    // Let the other downloads finish or fail before reporting (no stray writes after return).
    await Promise.allSettled(downloads.values());
  }
  if (have >= 0) {
    for (let i = 0; i <= have; i++) {
      p.emit({ type: 'unpack', layer: layers[i]!.digest, chainId: chain[i]!, status: 'exists' });
    }
  }
  await labelUnpackedConfig(p.ctx, unpacker, manifest.config.digest, chain[chain.length - 1]!);
  p.unpacked.push({
    manifest: desc.digest,
    chainId: chain[chain.length - 1]!,
    snapshotter: unpacker.snapshotterName,
  });
}

/**
 * Pulls an image: resolves the reference, fetches index/manifest/config/layers into the
 * content store with containerd's gc and distribution-source labels, and (with a
 * snapshotter) unpacks the layers under their chain IDs while later layers download.
 * Concurrent pulls in this process share downloads and unpacks. Returns the image record.
 */
export async function pull(
  ctx: Context,
  reference: string | ImageReference,
  opts: PullOptions,
): Promise<PullResult> {
  const ref = typeof reference === 'string' ? parseReference(reference) : reference;
  const name = formatReference(ref);
  const client = opts.client ?? new RegistryClient(opts.registry);
  const repo = await client.repository(ref);
  const resolved = await repo.resolve(ctx.signal);
  opts.onProgress?.({ type: 'resolved', name, desc: resolved.desc });

  let pctx = ctx;
  let ownLease: string | undefined;
  if (opts.leases && !ctx.lease) {
    ownLease = await createPullLease(ctx, opts.leases);
    pctx = withLease(ctx, ownLease);
  }
  try {
    const all = opts.platform === 'all';
    const matcher = platformMatcher(opts.platform);
    const doUnpack = opts.unpack ?? opts.snapshotter !== undefined;
    if (doUnpack && !opts.snapshotter) throw new FailedPreconditionError('unpack needs a snapshotter');
    const p: PullContext = {
      ctx: pctx,
      repo,
      content: opts.content,
      matcher,
      unpackMatcher: all ? defaultPlatformMatcher() : matcher,
      sourceKey: distributionSourceKey(ref.domain),
      limiter: new Limiter(opts.maxConcurrentDownloads ?? 3),
      leases: opts.leases,
      emit: (e) => opts.onProgress?.(e),
      stageLayers: opts.stageLayers ?? false,
      manifests: [],
      unpacked: [],
    };
    if (doUnpack) {
      p.unpacker = {
        snapshotter: opts.snapshotter!,
        snapshotterName: opts.snapshotterName ?? 'overlayfs',
        applier: opts.applier ?? mountApplier(opts.content),
        content: opts.content,
        leases: opts.leases,
        onEvent: (e) => opts.onProgress?.({ type: 'unpack', ...e }),
      };
    }
    await handle(p, resolved.desc, all);
    const image: Image = { name, target: resolved.desc, labels: { ...(opts.labels ?? {}) } };
    await failpoint('pull.image.save');
    if (opts.saveImage) await opts.saveImage(pctx, image);
    return { image, manifests: p.manifests, unpacked: p.unpacked };
  } finally {
    if (ownLease) await opts.leases!.delete(ctx, ownLease).catch(() => undefined);
  }
}
