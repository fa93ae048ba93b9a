import { type Context, NotImplementedError, type wire } from '@berth/api';
import type { CriService } from '../service';

/** ImageService: images in the k8s.io namespace, pulled through the daemon's transfer service. */
export class ImageManager {
  constructor(private readonly cri: CriService) {}

  async listImages(_ctx: Context, _req: wire.cri.ListImagesRequest): Promise<wire.cri.ListImagesResponse> {
    throw new NotImplementedError('ListImages: not implemented');
  }

  async imageStatus(_ctx: Context, _req: wire.cri.ImageStatusRequest): Promise<wire.cri.ImageStatusResponse> {
    throw new NotImplementedError('ImageStatus: not implemented');
  }

  async pullImage(_ctx: Context, _req: wire.cri.PullImageRequest): Promise<wire.cri.PullImageResponse> {
    throw new NotImplementedError('PullImage: not implemented');
  }

  async removeImage(_ctx: Context, _req: wire.cri.RemoveImageRequest): Promise<wire.cri.RemoveImageResponse> {
    throw new NotImplementedError('RemoveImage: not implemented');
  }

  async imageFsInfo(_ctx: Context, _req: wire.cri.ImageFsInfoRequest): Promise<wire.cri.ImageFsInfoResponse> {
    throw new NotImplementedError('ImageFsInfo: not implemented');
  }
}
