import type { Context, Image, ImageStore, Publisher } from '@berth/api';
import { Topics } from '@berth/api';

/** Collects garbage now (the gc.v1 scheduler). */
export interface GCScheduler {
  scheduleAndWait(): Promise<unknown>;
}

type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

/** The event type names containerd 1.6 publishes for images (package containerd.services.images.v1). */
export const IMAGE_EVENTS = {
  create: 'containerd.services.images.v1.ImageCreate',
  update: 'containerd.services.images.v1.ImageUpdate',
  delete: 'containerd.services.images.v1.ImageDelete',
} as const;

/**
 * The images service layer: the metadata image store plus events, and a synchronous delete
 * that waits for a garbage collection through the GC scheduler, as containerd's.
 */
export class ImagesLocal implements ImageStore {
  constructor(
    private readonly store: ImageStore,
    private readonly publisher: Publisher,
    private readonly gc: GCScheduler | undefined,
  ) {}

  get(ctx: Context, name: string): Promise<Image> {
    return this.store.get(ctx, name);
  }

  list(ctx: Context, filters?: string[]): Promise<Image[]> {
    return this.store.list(ctx, filters);
  }

  async create(ctx: Context, image: ImageInput): Promise<Image> {
    const created = await this.store.create(ctx, image);
    await this.publisher.publish(ctx, Topics.imageCreate, IMAGE_EVENTS.create, {
      name: created.name,
      labels: created.labels,
    });
    return created;
  }

  async update(ctx: Context, image: ImageInput, fieldpaths?: string[]): Promise<Image> {
    const updated = await this.store.update(ctx, image, fieldpaths);
    await this.publisher.publish(ctx, Topics.imageUpdate, IMAGE_EVENTS.update, {
      name: updated.name,
      labels: updated.labels,
    });
    return updated;
  }

  async delete(ctx: Context, name: string, opts: { sync?: boolean } = {}): Promise<void> {
    await this.store.delete(ctx, name, this.gc ? {} : opts);
    await this.publisher.publish(ctx, Topics.imageDelete, IMAGE_EVENTS.delete, { name });
    if (opts.sync && this.gc) await this.gc.scheduleAndWait();
  }
}
