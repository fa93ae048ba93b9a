import { type Descriptor, grpcService, type Image, type ImageStore } from '@berth/api';
import type { Logger } from '../../log';
import { EMPTY, maskPaths, type Timestamp, toTimestamp } from '../../server/convert';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';

export const IMAGES_SERVICE = 'containerd.services.images.v1.Images';

interface DescriptorMsg {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

interface ImageMsg {
  name: string;
  labels: Record<string, string>;
  target: DescriptorMsg | null;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
}

export function imageToMsg(image: Image): ImageMsg {
  return {
    name: image.name,
    labels: image.labels,
    target: {
      mediaType: image.target.mediaType,
      digest: image.target.digest,
      size: image.target.size,
      annotations: image.target.annotations ?? {},
    },
    createdAt: toTimestamp(image.createdAt),
    updatedAt: toTimestamp(image.updatedAt),
  };
}

export function imageFromMsg(msg: ImageMsg | null | undefined): Omit<Image, 'createdAt' | 'updatedAt'> {
  const t = msg?.target;
  const target: Descriptor | undefined = t
    ? { mediaType: t.mediaType, digest: t.digest, size: Number(t.size) }
    : undefined;
  if (target && t && Object.keys(t.annotations ?? {}).length > 0) target.annotations = { ...t.annotations };
  return { name: msg?.name ?? '', labels: { ...(msg?.labels ?? {}) }, target: target as Descriptor };
}

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
        async (ctx, req: { name: string }) => ({ image: imageToMsg(await store.get(ctx, req.name)) }),
        opts('Get'),
      ),
      List: unary(
        async (ctx, req: { filters: string[] }) => ({
          images: (await store.list(ctx, req.filters)).map(imageToMsg),
        }),
        opts('List'),
      ),
      Create: unary(
        async (ctx, req: { image: ImageMsg | null }) => ({
          image: imageToMsg(await store.create(ctx, imageFromMsg(req.image))),
        }),
        opts('Create'),
      ),
      Update: unary(
        async (ctx, req: { image: ImageMsg | null; updateMask: { paths: string[] } | null }) => ({
          image: imageToMsg(await store.update(ctx, imageFromMsg(req.image), maskPaths(req.updateMask))),
        }),
        opts('Update'),
      ),
      Delete: unary(async (ctx, req: { name: string; sync: boolean }) => {
        await store.delete(ctx, req.name, { sync: req.sync });
        return EMPTY;
      }, opts('Delete')),
    });
  }
}
