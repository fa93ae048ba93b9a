import { type Context, type Image, type ImageStore, imageFromWire, imageToWire, type wire } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

/** An ImageStore over containerd.services.images.v1.Images, as containerd's remote image store. */
export class RemoteImageStore implements ImageStore {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async get(ctx: Context, name: string): Promise<Image> {
    const res = await unary<wire.images.GetImageResponse>(this.client, 'Get', { name }, ctx, this.target);
    return imageFromWire(res.image);
  }

  async list(ctx: Context, filters: string[] = []): Promise<Image[]> {
    const res = await unary<wire.images.ListImagesResponse>(
      this.client,
      'List',
      { filters },
      ctx,
      this.target,
    );
    return (res.images ?? []).map(imageFromWire);
  }

  async create(ctx: Context, image: ImageInput): Promise<Image> {
    const res = await unary<wire.images.GetImageResponse>(
      this.client,
      'Create',
      { image: imageToWire(image) },
      ctx,
      this.target,
    );
    return imageFromWire(res.image);
  }

  async update(ctx: Context, image: ImageInput, fieldpaths: string[] = []): Promise<Image> {
    const req: Partial<wire.images.UpdateImageRequest> = { image: imageToWire(image) };
    if (fieldpaths.length > 0) req.updateMask = fieldpaths;
    const res = await unary<wire.images.GetImageResponse>(this.client, 'Update', req, ctx, this.target);
    return imageFromWire(res.image);
  }

  async delete(ctx: Context, name: string, opts: { sync?: boolean } = {}): Promise<void> {
    await unary(this.client, 'Delete', { name, sync: opts.sync === true }, ctx, this.target);
  }
}
