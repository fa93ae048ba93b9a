import type { Context, Descriptor, Image, ImageStore } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { type Timestamp, toDate, toTimestamp, unary } from './rpc';

interface DescriptorMessage {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

interface ImageMessage {
  name: string;
  labels: Record<string, string>;
  target: DescriptorMessage | null;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
}

type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

function imageFromMessage(m: ImageMessage): Image {
  const t = m.target;
  const target: Descriptor = {
    mediaType: t?.mediaType ?? '',
    digest: t?.digest ?? '',
    size: Number(t?.size ?? 0),
  };
  if (t && Object.keys(t.annotations ?? {}).length > 0) target.annotations = { ...t.annotations };
  return {
    name: m.name,
    labels: { ...(m.labels ?? {}) },
    target,
    createdAt: toDate(m.createdAt),
    updatedAt: toDate(m.updatedAt),
  };
}

function imageToMessage(image: ImageInput & Partial<Pick<Image, 'createdAt' | 'updatedAt'>>): ImageMessage {
  const t = image.target;
  return {
    name: image.name,
    labels: image.labels ?? {},
    target: t
      ? { mediaType: t.mediaType, digest: t.digest, size: t.size, annotations: t.annotations ?? {} }
      : null,
    createdAt: image.createdAt ? toTimestamp(image.createdAt) : null,
    updatedAt: image.updatedAt ? toTimestamp(image.updatedAt) : null,
  };
}

/** An ImageStore over containerd.services.images.v1.Images, as containerd's remote image store. */
export class RemoteImageStore implements ImageStore {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async get(ctx: Context, name: string): Promise<Image> {
    const res = await unary<{ image: ImageMessage }>(this.client, 'Get', { name }, ctx, this.target);
    return imageFromMessage(res.image);
  }

  async list(ctx: Context, filters: string[] = []): Promise<Image[]> {
    const res = await unary<{ images: ImageMessage[] }>(this.client, 'List', { filters }, ctx, this.target);
    return (res.images ?? []).map(imageFromMessage);
  }

  async create(ctx: Context, image: ImageInput): Promise<Image> {
    const res = await unary<{ image: ImageMessage }>(
      this.client,
      'Create',
      { image: imageToMessage(image) },
      ctx,
      this.target,
    );
    return imageFromMessage(res.image);
  }

  async update(ctx: Context, image: ImageInput, fieldpaths: string[] = []): Promise<Image> {
    const req: Record<string, unknown> = { image: imageToMessage(image) };
    if (fieldpaths.length > 0) req.updateMask = { paths: fieldpaths };
    const res = await unary<{ image: ImageMessage }>(this.client, 'Update', req, ctx, this.target);
    return imageFromMessage(res.image);
  }

  async delete(ctx: Context, name: string, opts: { sync?: boolean } = {}): Promise<void> {
    await unary(this.client, 'Delete', { name, sync: opts.sync === true }, ctx, this.target);
  }
}
