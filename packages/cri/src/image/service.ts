import {
  type BerthError,
  type Context,
  type Descriptor,
  isAlreadyExists,
  isBerthError,
  isNotFound,
  UnknownError,
  type wire,
} from '@berth/api';
import { formatReference, parseReference } from '@berth/images';
import type { CriService } from '../service';
import {
  authCredentials,
  CRI_IMAGE_LABEL,
  CRI_IMAGE_LABEL_VALUE,
  imageSpecJson,
  repoDigestAndTag,
  splitReferences,
  userFromImage,
} from './references';
import { listCriImages, type ResolvedImage, resolveImage } from './resolve';

/** The error `e` with `what` put in front of its message, of the same class (same gRPC code). */
function wrapError(e: unknown, what: string): Error {
  if (isBerthError(e)) {
    const Ctor = e.constructor as new (message: string, opts?: { cause?: unknown }) => BerthError;
    return new Ctor(`${what}: ${e.message}`, { cause: e });
  }
  return new UnknownError(`${what}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

/** ImageService: images in the k8s.io namespace, pulled through the daemon's transfer service. */
export class ImageManager {
  /** Pulls in progress, by reference and credentials: concurrent identical pulls share one. */
  private readonly pulls = new Map<string, Promise<string>>();

  constructor(private readonly cri: CriService) {}

  /** The local image `reference` names; NotFound naming the reference. */
  resolve(ctx: Context, reference: string): Promise<ResolvedImage> {
    return resolveImage(ctx, this.cri.deps, reference);
  }

  /** The image, pulled first when it is not there (the sandbox image; no credentials). */
  async ensure(ctx: Context, reference: string): Promise<ResolvedImage> {
    try {
      return await this.resolve(ctx, reference);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    const { imageRef } = await this.pullImage(ctx, {
      image: { image: reference, annotations: {} },
      auth: undefined,
      sandboxConfig: undefined,
    });
    return this.resolve(ctx, imageRef);
  }

  /** Every image; with a filter's image spec, only the image it names (none when absent). */
  async listImages(ctx: Context, req: wire.cri.ListImagesRequest): Promise<wire.cri.ListImagesResponse> {
    const wanted = req.filter?.image?.image;
    if (wanted) {
      try {
        return { images: [toCriImage(await this.resolve(ctx, wanted))] };
      } catch (e) {
        if (isNotFound(e)) return { images: [] };
        throw e;
      }
    }
    const images = await listCriImages(ctx, this.cri.deps);
    return { images: [...images.values()].map(toCriImage) };
  }

  /** The image the spec names; no image (not an error) when there is none. */
  async imageStatus(ctx: Context, req: wire.cri.ImageStatusRequest): Promise<wire.cri.ImageStatusResponse> {
    let image: ResolvedImage;
    try {
      image = await this.resolve(ctx, req.image?.image ?? '');
    } catch (e) {
      if (isNotFound(e)) return { image: undefined, info: {} };
      throw e;
    }
    const info: Record<string, string> = {};
    if (req.verbose)
      info.info = JSON.stringify({ chainID: image.chainId, imageSpec: imageSpecJson(image.rawConfig) });
    return { image: toCriImage(image), info };
  }

  /**
   * Pulls the image and unpacks it into the configured snapshotter, then keeps the records
   * containerd's CRI keeps: the reference, the repo digest and the id, all labelled
   * `io.cri-containerd.image=managed`. Answers the image id.
   */
  async pullImage(ctx: Context, req: wire.cri.PullImageRequest): Promise<wire.cri.PullImageResponse> {
    const reference = req.image?.image ?? '';
    // InvalidArgument naming the reference when it is not one.
    const ref = parseReference(reference);
    const name = formatReference(ref);
    const credentials = authCredentials(req.auth);
    const key = JSON.stringify([name, req.auth ?? null]);
    let p = this.pulls.get(key);
    if (!p) {
      p = this.pull(ctx, name, credentials).finally(() => this.pulls.delete(key));
      this.pulls.set(key, p);
    }
    return { imageRef: await p };
  }

  private async pull(
    ctx: Context,
    name: string,
    credentials: ReturnType<typeof authCredentials>,
  ): Promise<string> {
    const deps = this.cri.deps;
    const labels = { [CRI_IMAGE_LABEL]: CRI_IMAGE_LABEL_VALUE };
    const log = deps.log.with({ image: name });
    log.debug('cri: pulling image');
    let record: Awaited<ReturnType<typeof deps.puller.pull>>;
    try {
      record = await deps.puller.pull(ctx, name, {
        snapshotter: this.cri.config.snapshotter,
        hostsDir: this.cri.config.registryConfigPath,
        credentials,
        labels,
        name,
      });
    } catch (e) {
      throw wrapError(e, `failed to pull and unpack image "${name}"`);
    }
    const { id } = await resolveImage(ctx, deps, record.name).catch((e) => {
      throw wrapError(e, `failed to read image "${name}"`);
    });
    const { repoTag, repoDigest } = repoDigestAndTag(parseReference(name), record.target.digest);
    for (const r of [id, repoTag, repoDigest]) {
      if (r && r !== record.name) await this.keepReference(ctx, r, record.target);
    }
    log.debug(`cri: pulled image ${id}`);
    return id;
  }

  /** Creates the record `name` → `target`, or points an existing one there (containerd's createImageReference). */
  private async keepReference(ctx: Context, name: string, target: Descriptor): Promise<void> {
    const images = this.cri.deps.images;
    const labels = { [CRI_IMAGE_LABEL]: CRI_IMAGE_LABEL_VALUE };
    try {
      await images.create(ctx, { name, target, labels });
      return;
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
    }
    const old = await images.get(ctx, name);
    if (old.target.digest === target.digest && old.labels[CRI_IMAGE_LABEL] === CRI_IMAGE_LABEL_VALUE) return;
    await images.update(ctx, { name, target, labels }, ['target', `labels.${CRI_IMAGE_LABEL}`]);
  }

  /**
   * Removes every record of the image a tag, digest reference or id names; the last removal
   * waits for the garbage collection. An image that is not there is no error.
   */
  async removeImage(ctx: Context, req: wire.cri.RemoveImageRequest): Promise<wire.cri.RemoveImageResponse> {
    let image: ResolvedImage;
    try {
      image = await this.resolve(ctx, req.image?.image ?? '');
    } catch (e) {
      if (isNotFound(e)) return {};
      throw e;
    }
    const refs = image.references;
    for (let i = 0; i < refs.length; i++) {
      try {
        await this.cri.deps.images.delete(ctx, refs[i]!, { sync: i === refs.length - 1 });
      } catch (e) {
        if (!isNotFound(e))
          throw wrapError(e, `failed to delete image reference "${refs[i]}" of ${image.id}`);
      }
    }
    return {};
  }

  /**
   * The filesystem images are unpacked on: the snapshotter's directory, with the bytes and
   * inodes its snapshots in k8s.io use (what containerd's snapshot syncer sums).
   */
  async imageFsInfo(ctx: Context, _req: wire.cri.ImageFsInfoRequest): Promise<wire.cri.ImageFsInfoResponse> {
    const deps = this.cri.deps;
    const name = this.cri.config.snapshotter;
    const sn = deps.snapshotter(name);
    const keys: string[] = [];
    await sn.walk(ctx, (info) => {
      keys.push(info.name);
    });
    let usedBytes = 0;
    let inodesUsed = 0;
    for (const key of keys) {
      try {
        const u = await sn.usage(ctx, key);
        usedBytes += u.size;
        inodesUsed += u.inodes;
      } catch (e) {
        // Removed while walking.
        if (!isNotFound(e)) throw e;
      }
    }
    return {
      imageFilesystems: [
        {
          timestamp: Date.now() * 1e6,
          fsId: { mountpoint: deps.snapshotterRoot(name) },
          usedBytes: { value: usedBytes },
          inodesUsed: { value: inodesUsed },
        },
      ],
    };
  }
}

/** An image as the CRI reports it. */
export function toCriImage(image: ResolvedImage): wire.cri.Image {
  const { repoTags, repoDigests } = splitReferences(image.references);
  const { uid, username } = userFromImage(image.config.config?.User);
  return {
    id: image.id,
    repoTags,
    repoDigests,
    size: image.size,
    uid: uid === undefined ? undefined : { value: uid },
    username,
    spec: { image: image.id, annotations: {} },
    pinned: false,
  };
}
