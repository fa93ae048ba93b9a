import type { Container, ContainerInput, ContainerStore, Context, Publisher } from '@berth/api';
import { Topics } from '@berth/api';

/**
 * The containers service layer: the metadata container store plus containerd's events
 * (ContainerCreate with the runtime, ContainerUpdate with labels and snapshot key,
 * ContainerDelete). The task manager may read records through it or through the store.
 */
export class ContainersLocal implements ContainerStore {
  constructor(
    private readonly store: ContainerStore,
    private readonly publisher: Publisher,
  ) {}

  get(ctx: Context, id: string): Promise<Container> {
    return this.store.get(ctx, id);
  }

  list(ctx: Context, filters?: string[]): Promise<Container[]> {
    return this.store.list(ctx, filters);
  }

  async create(ctx: Context, container: ContainerInput): Promise<Container> {
    const created = await this.store.create(ctx, container);
    const runtime: Record<string, unknown> = { name: created.runtime.name };
    if (created.runtime.options) runtime.options = created.runtime.options;
    await this.publisher.publish(ctx, Topics.containerCreate, 'containerd.events.ContainerCreate', {
      id: created.id,
      image: created.image,
      runtime,
    });
    return created;
  }

  async update(ctx: Context, container: ContainerInput, fieldpaths?: string[]): Promise<Container> {
    const updated = await this.store.update(ctx, container, fieldpaths);
    await this.publisher.publish(ctx, Topics.containerUpdate, 'containerd.events.ContainerUpdate', {
      id: updated.id,
      image: updated.image,
      labels: updated.labels,
      snapshotKey: updated.snapshotKey,
    });
    return updated;
  }

  async delete(ctx: Context, id: string): Promise<void> {
    await this.store.delete(ctx, id);
    await this.publisher.publish(ctx, Topics.containerDelete, 'containerd.events.ContainerDelete', { id });
  }
}
