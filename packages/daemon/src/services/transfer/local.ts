import {
  type AnyMessage,
  type ContentStore,
  type Context,
  type Descriptor,
  decodeAny,
  type Image,
  type ImageStore,
  InvalidArgumentError,
  isAlreadyExists,
  type LeaseManager,
  NotImplementedError,
  platformFromWire,
  requireNamespace,
  typeNameOfUrl,
  type wire,
} from '@berth/api';
import {
  type Applier,
  type ApplyPool,
  exportArchive,
  formatReference,
  importArchive,
  ingestRef,
  isLayerMediaType,
  manifestForPlatform,
  mountApplier,
  type PlatformSpec,
  type PullEvent,
  parseReference,
  pull,
  push,
  type RegistryClient,
  unpackImage,
} from '@berth/images';
import type { Logger } from '../../log';
import type { SnapshotsLocal } from '../snapshots/local';
import type { StreamManager } from '../streaming/manager';
import { receiveData, sendData } from './data-stream';
import { type ProgressMsg, ProgressReporter } from './progress';
import { registryClient } from './resolver';

const T = 'containerd.types.transfer.';
export const TransferTypes = {
  registry: `${T}OCIRegistry`,
  imageStore: `${T}ImageStore`,
  importStream: `${T}ImageImportStream`,
  exportStream: `${T}ImageExportStream`,
} as const;

export interface TransferOptions {
  /** The stream (Streaming service id) Progress messages go to. */
  progressStream?: string;
}

export interface TransferConfig {
  /** Blobs one pull downloads at once (containerd's max_concurrent_downloads). */
  max_concurrent_downloads: number;
  /** Apply layers on worker threads beside the downloads (false: in the Diff service). */
  apply_workers: boolean;
}

export interface TransferDeps {
  content: ContentStore;
  leases: LeaseManager;
  images: ImageStore;
  snapshots: SnapshotsLocal;
  differ: Applier;
  streams: StreamManager;
  /** Layers of pulls and imports are applied on these worker threads (else by `differ`). */
  pool?: ApplyPool;
  config: TransferConfig;
  log?: Logger;
}

function platformSpec(list: readonly wire.types.Platform[] | undefined): PlatformSpec | undefined {
  const ps = (list ?? []).filter((p) => p.os || p.architecture).map(platformFromWire);
  return ps.length > 0 ? ps : undefined;
}

/**
 * Layers go to `pooled` (the walking differ's work, on worker threads); anything else (a
 * media type only another differ knows) to the Diff service.
 */
function layerApplier(pooled: Applier, differ: Applier): Applier {
  return {
    apply: (ctx, desc, mounts) =>
      isLayerMediaType(desc.mediaType) ? pooled.apply(ctx, desc, mounts) : differ.apply(ctx, desc, mounts),
    stage: pooled.stage
      ? (ctx, desc, dir) => {
          if (!isLayerMediaType(desc.mediaType))
            throw new NotImplementedError(`cannot stage media type ${desc.mediaType}`);
          return pooled.stage!(ctx, desc, dir);
        }
      : undefined,
  };
}

/** Creates the image, or replaces target and labels of the one with that name (containerd's ImageStore.Store). */
async function storeImage(ctx: Context, images: ImageStore, image: Omit<Image, 'createdAt' | 'updatedAt'>) {
  try {
    return await images.create(ctx, image);
  } catch (e) {
    if (!isAlreadyExists(e)) throw e;
    return images.update(ctx, image);
  }
}

/**
 * containerd 2's local transfer service, for what berth's clients ask: registry -> image
 * store (pull, with unpack), image store -> registry (push), archive stream -> image store
 * (import) and image store -> archive stream (export). Progress goes to the client on the
 * stream it named, as containerd.types.transfer.Progress messages.
 */
export class TransferLocal {
  private readonly applier: Applier;

  constructor(private readonly deps: TransferDeps) {
    this.applier = deps.pool
      ? layerApplier(mountApplier(deps.content, { pool: deps.pool }), deps.differ)
      : deps.differ;
  }

  async transfer(ctx: Context, source: AnyMessage, destination: AnyMessage, opts: TransferOptions = {}) {
    requireNamespace(ctx);
    if (!source?.typeUrl) throw new InvalidArgumentError('transfer: source must be set');
    if (!destination?.typeUrl) throw new InvalidArgumentError('transfer: destination must be set');
    const src = typeNameOfUrl(source.typeUrl);
    const dst = typeNameOfUrl(destination.typeUrl);
    const progress = new ProgressReporter(
      opts.progressStream ? this.deps.streams.get(ctx, opts.progressStream) : undefined,
    );
    try {
      if (src === TransferTypes.registry && dst === TransferTypes.imageStore) {
        await this.pull(ctx, decodeAny(source), decodeAny(destination), progress);
      } else if (src === TransferTypes.imageStore && dst === TransferTypes.registry) {
        await this.push(ctx, decodeAny(source), decodeAny(destination), progress);
      } else if (src === TransferTypes.importStream && dst === TransferTypes.imageStore) {
        await this.import(ctx, decodeAny(source), decodeAny(destination), progress);
      } else if (src === TransferTypes.imageStore && dst === TransferTypes.exportStream) {
        await this.export(ctx, decodeAny(source), decodeAny(destination), progress);
      } else {
        throw new NotImplementedError(`transfer from ${src} to ${dst}: not implemented`);
      }
    } finally {
      await progress.close();
    }
  }

  private authStream(ctx: Context, res: wire.transferTypes.RegistryResolver | undefined) {
    return res?.authStream ? this.deps.streams.get(ctx, res.authStream) : undefined;
  }

  private async pull(
    ctx: Context,
    src: wire.transferTypes.OCIRegistry,
    dst: wire.transferTypes.ImageStore,
    progress: ProgressReporter,
  ) {
    if (!src.reference) throw new InvalidArgumentError('transfer: registry reference must be set');
    const ref = parseReference(src.reference);
    const name = formatReference(ref);
    const where = `OCI Registry (${name})`;
    const client = registryClient(src.resolver, {
      authStream: this.authStream(ctx, src.resolver),
      reference: name,
    });
    const unpack = dst.unpacks.length > 0;
    const snapshotterName = unpack ? dst.unpacks[0]!.snapshotter : undefined;
    const seen = new Set<string>();
    const onProgress = (e: PullEvent) => {
      if (!progress.active) return;
      if (e.type === 'resolved') {
        progress.emit({ event: `Pulling from ${where}` });
        progress.emit({ event: 'fetching image content', name, total: e.desc.size });
        return;
      }
      if (e.type === 'unpack') {
        const key = `layer-${e.layer}`;
        if (e.status === 'started') progress.emit({ event: 'unpacking', name: key, parents: [name] });
        else progress.emit({ event: 'unpacked', name: key, parents: [name] });
        return;
      }
      const key = ingestRef({ mediaType: e.mediaType, digest: e.digest });
      const base = { name: key, parents: [name], total: e.total };
      if (!seen.has(key)) {
        seen.add(key);
        progress.emit({ ...base, event: 'waiting', progress: 0 });
      }
      switch (e.status) {
        case 'downloading':
        case 'resumed':
          progress.update({ ...base, event: 'downloading', progress: e.offset });
          break;
        case 'exists':
          progress.emit({ ...base, event: 'already exists', progress: e.total });
          break;
        case 'done':
        case 'shared':
          progress.emit({ ...base, event: 'complete', progress: e.total });
          break;
      }
    };
    progress.emit({ event: `Resolving from ${where}` });
    const saved = await this.pullImage(ctx, ref, {
      client,
      snapshotter: snapshotterName,
      platform: platformSpec(dst.platforms),
      name: dst.name || undefined,
      labels: { ...dst.labels },
      onProgress,
    });
    if (saved) progress.emit({ event: 'saved', name: saved.name, total: saved.target.size });
    progress.emit({ event: `Completed pull from ${where}` });
  }

  /**
   * Pulls `ref` into the content store and saves the image record (replacing one of the same
   * name), unpacking into `snapshotter` when one is named: the work of a registry -> image
   * store transfer, for in-process callers such as the CRI plugin.
   */
  async pullImage(
    ctx: Context,
    ref: ReturnType<typeof parseReference>,
    opts: {
      client: RegistryClient;
      snapshotter?: string;
      platform?: PlatformSpec;
      name?: string;
      labels?: Record<string, string>;
      onProgress?: (e: PullEvent) => void;
    },
  ): Promise<Image | undefined> {
    requireNamespace(ctx);
    const unpack = opts.snapshotter !== undefined;
    const snapshotterName = unpack ? opts.snapshotter || this.deps.snapshots.defaultSnapshotter : '';
    const snapshotter = unpack ? this.deps.snapshots.get(snapshotterName) : undefined;
    let saved: Image | undefined;
    await pull(ctx, ref, {
      content: this.deps.content,
      client: opts.client,
      platform: opts.platform,
      unpack,
      snapshotter,
      snapshotterName: snapshotterName || undefined,
      applier: this.applier,
      // Layers apply side by side on the apply workers (overlayfs: staged upper dirs).
      stageLayers: this.applier.stage !== undefined && snapshotterName === 'overlayfs',
      leases: this.deps.leases,
      maxConcurrentDownloads: this.deps.config.max_concurrent_downloads,
      onProgress: opts.onProgress,
      saveImage: async (lctx, image) => {
        saved = await storeImage(lctx, this.deps.images, {
          name: opts.name || image.name,
          target: image.target,
          labels: { ...opts.labels },
        });
      },
    });
    return saved;
  }

  private async push(
    ctx: Context,
    src: wire.transferTypes.ImageStore,
    dst: wire.transferTypes.OCIRegistry,
    progress: ProgressReporter,
  ) {
    if (!src.name) throw new InvalidArgumentError('transfer: image name to push must be set');
    if (!dst.reference) throw new InvalidArgumentError('transfer: registry reference must be set');
    const image = await this.deps.images.get(ctx, src.name);
    const name = formatReference(parseReference(dst.reference));
    const client = registryClient(dst.resolver, {
      authStream: this.authStream(ctx, dst.resolver),
      reference: name,
    });
    progress.emit({ event: `Pushing to OCI Registry (${name})` });
    // With a platform, push that platform's manifest rather than an index whose other
    // manifests may not be here (what ctr push --platform does).
    const platform = platformSpec(src.platforms);
    const target = platform
      ? await manifestForPlatform(ctx, this.deps.content, image.target, platform)
      : image.target;
    await push(ctx, name, target, {
      content: this.deps.content,
      client,
      onProgress: (e) => {
        const msg: ProgressMsg & { name: string } = {
          name: ingestRef({ mediaType: e.mediaType, digest: e.digest }),
          parents: [name],
          progress: e.offset,
          total: e.total,
          event: e.status === 'done' ? 'complete' : e.status === 'exists' ? 'already exists' : e.status,
        };
        if (e.status === 'uploading') progress.update(msg);
        else progress.emit(msg);
      },
    });
    progress.emit({ event: `Completed push to OCI Registry (${name})`, name, total: image.target.size });
  }

  private async import(
    ctx: Context,
    src: wire.transferTypes.ImageImportStream,
    dst: wire.transferTypes.ImageStore,
    progress: ProgressReporter,
  ) {
    if (!src.stream) throw new InvalidArgumentError('transfer: import stream must be set');
    const stream = this.deps.streams.get(ctx, src.stream);
    const platform = platformSpec(dst.platforms) ?? (dst.allMetadata ? 'all' : undefined);
    const saved: Image[] = [];
    const result = await importArchive(ctx, receiveData(stream), {
      content: this.deps.content,
      leases: this.deps.leases,
      platform,
      baseName: dst.name || undefined,
      saveImage: async (lctx, image) => {
        const img = await storeImage(lctx, this.deps.images, {
          name: image.name,
          target: image.target,
          labels: { ...image.labels, ...dst.labels },
        });
        saved.push(img);
        if (dst.unpacks.length > 0) {
          const sn = dst.unpacks[0]!.snapshotter || this.deps.snapshots.defaultSnapshotter;
          await unpackImage(lctx, img.target, {
            content: this.deps.content,
            snapshotter: this.deps.snapshots.get(sn),
            snapshotterName: sn,
            applier: this.applier,
            leases: this.deps.leases,
            platform: platformSpec(dst.unpacks[0]!.platform ? [dst.unpacks[0]!.platform] : undefined),
            onEvent: (e) =>
              progress.emit({
                event: e.status === 'started' ? 'unpacking' : 'unpacked',
                name: `layer-${e.layer}`,
                parents: [img.name],
              }),
          });
        }
      },
    });
    for (const img of saved) progress.emit({ event: 'saved', name: img.name, total: img.target.size });
    if (saved.length === 0)
      progress.emit({ event: 'imported', name: result.index.digest, total: result.index.size });
  }

  private async export(
    ctx: Context,
    src: wire.transferTypes.ImageStore,
    dst: wire.transferTypes.ImageExportStream,
    progress: ProgressReporter,
  ) {
    if (!dst.stream) throw new InvalidArgumentError('transfer: export stream must be set');
    const names = [src.name, ...src.exportImages].filter((n) => n);
    if (names.length === 0) throw new InvalidArgumentError('transfer: no image to export');
    const items: Array<{ name: string; target: Descriptor }> = [];
    for (const n of names) items.push(await this.deps.images.get(ctx, n));
    const stream = this.deps.streams.get(ctx, dst.stream);
    await sendData(
      stream,
      exportArchive(ctx, items, {
        content: this.deps.content,
        platform: dst.allPlatforms ? 'all' : platformSpec(dst.platforms),
        dockerManifest: !dst.skipDockerManifest,
      }),
    );
    for (const i of items) progress.emit({ event: 'exported', name: i.name, total: i.target.size });
  }
}
