import { type Context, isNotFound, NotImplementedError, type wire } from '@berth/api';
import type { CriService } from '../service';
import { type ResolvedImage, resolveImage } from './resolve';

/** ImageService: images in the k8s.io namespace, pulled through the daemon's transfer service. */
export class ImageManager {
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
    await this.pullImage(ctx, {
      image: { image: reference, annotations: {} },
      auth: undefined,
      sandboxConfig: undefined,
    });
    return this.resolve(ctx, reference);
  }

  async listImages(_ctx: Context, _req: wire.cri.ListImagesRequest): Promise<wire.cri.ListImagesResponse> {
    throw new NotImplementedError('ListImages: not implemented');
  }

  async imageStatus(_ctx: Context, _req: wire.cri.ImageStatusRequest): Promise<wire.cri.ImageStatusResponse> {
    throw new NotImplementedError('ImageStatus: not implemented');
  }

  async pullImage(ctx: Context, req: wire.cri.PullImageRequest): Promise<wire.cri.PullImageResponse> {
    // The whole of PullImage (auth, the id/digest records containerd keeps) is the image work's;
    // this much lets sandboxes pull their pause image meanwhile.
    const ref = req.image?.image ?? '';
    const image = await this.cri.deps.puller.pull(ctx, ref, {
      snapshotter: this.cri.config.snapshotter,
      hostsDir: this.cri.config.registryConfigPath,
    });
    const resolved = await resolveImage(ctx, this.cri.deps, image.name);
    return { imageRef: resolved.id };
  }

  async removeImage(_ctx: Context, _req: wire.cri.RemoveImageRequest): Promise<wire.cri.RemoveImageResponse> {
    throw new NotImplementedError('RemoveImage: not implemented');
  }

  async imageFsInfo(_ctx: Context, _req: wire.cri.ImageFsInfoRequest): Promise<wire.cri.ImageFsInfoResponse> {
    throw new NotImplementedError('ImageFsInfo: not implemented');
  }
}
