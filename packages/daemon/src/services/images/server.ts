import { grpcService, type ImageStore, imageFromWire, imageToWire, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';

export const IMAGES_SERVICE = 'containerd.services.images.v1.Images';

/** containerd.services.images.v1.Images. */
export class ImagesServer implements GrpcService {
  constructor(
    private readonly images: ImageStore,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const store = this.images;
    const opts = (method: string) => ({ log: this.log, method: `Images/${method}` });
    server.addService(grpcService(IMAGES_SERVICE), {
      Get: unary(
        async (ctx, req: wire.images.GetImageRequest) => ({
          image: imageToWire(await store.get(ctx, req.name)),
        }),
        opts('Get'),
      ),
      List: unary(
        async (ctx, req: wire.images.ListImagesRequest) => ({
          images: (await store.list(ctx, req.filters)).map(imageToWire),
        }),
        opts('List'),
      ),
      Create: unary(
        async (ctx, req: wire.images.CreateImageRequest) => ({
          image: imageToWire(await store.create(ctx, imageFromWire(req.image))),
        }),
        opts('Create'),
      ),
      Update: unary(
        async (ctx, req: wire.images.UpdateImageRequest) => ({
          image: imageToWire(await store.update(ctx, imageFromWire(req.image), req.updateMask ?? [])),
        }),
        opts('Update'),
      ),
      Delete: unary(async (ctx, req: wire.images.DeleteImageRequest) => {
        await store.delete(ctx, req.name, { sync: req.sync });
        return {};
      }, opts('Delete')),
    });
  }
}
