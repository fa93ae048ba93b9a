import {
  type Container,
  type ContainerInput,
  type ContainerStore,
  type Context,
  containerFromWire,
  containerToWire,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

/** A ContainerStore over containerd.services.containers.v1.Containers, as containerd's remote store. */
export class RemoteContainerStore implements ContainerStore {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async get(ctx: Context, id: string): Promise<Container> {
    const res = await unary<wire.containers.GetContainerResponse>(
      this.client,
      'Get',
      { id },
      ctx,
      this.target,
    );
    return containerFromWire(res.container);
  }

  async list(ctx: Context, filters: string[] = []): Promise<Container[]> {
    const res = await unary<wire.containers.ListContainersResponse>(
      this.client,
      'List',
      { filters },
      ctx,
      this.target,
    );
    return (res.containers ?? []).map(containerFromWire);
  }

  async create(ctx: Context, container: ContainerInput): Promise<Container> {
    const res = await unary<wire.containers.GetContainerResponse>(
      this.client,
      'Create',
      { container: containerToWire(container) },
      ctx,
      this.target,
    );
    return containerFromWire(res.container);
  }

  async update(ctx: Context, container: ContainerInput, fieldpaths: string[] = []): Promise<Container> {
    const req: Partial<wire.containers.UpdateContainerRequest> = { container: containerToWire(container) };
    if (fieldpaths.length > 0) req.updateMask = fieldpaths;
    const res = await unary<wire.containers.GetContainerResponse>(
      this.client,
      'Update',
      req,
      ctx,
      this.target,
    );
    return containerFromWire(res.container);
  }

  async delete(ctx: Context, id: string): Promise<void> {
    await unary(this.client, 'Delete', { id }, ctx, this.target);
  }
}
