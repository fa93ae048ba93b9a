import { type ContainerStore, containerFromWire, containerToWire, grpcService, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { send, serverStream, unary } from '../../server/handlers';

export const CONTAINERS_SERVICE = 'containerd.services.containers.v1.Containers';

/** containerd.services.containers.v1.Containers. */
export class ContainersServer implements GrpcService {
  constructor(
    private readonly containers: ContainerStore,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const store = this.containers;
    const opts = (method: string) => ({ log: this.log, method: `Containers/${method}` });
    server.addService(grpcService(CONTAINERS_SERVICE), {
      Get: unary(
        async (ctx, req: wire.containers.GetContainerRequest) => ({
          container: containerToWire(await store.get(ctx, req.id)),
        }),
        opts('Get'),
      ),
      List: unary(
        async (ctx, req: wire.containers.ListContainersRequest) => ({
          containers: (await store.list(ctx, req.filters)).map(containerToWire),
        }),
        opts('List'),
      ),
      ListStream: serverStream(async (ctx, req: wire.containers.ListContainersRequest, call) => {
        for (const c of await store.list(ctx, req.filters)) {
          if (call.cancelled) return;
          await send(call, { container: containerToWire(c) });
        }
      }, opts('ListStream')),
      Create: unary(
        async (ctx, req: wire.containers.CreateContainerRequest) => ({
          container: containerToWire(await store.create(ctx, containerFromWire(req.container))),
        }),
        opts('Create'),
      ),
      Update: unary(
        async (ctx, req: wire.containers.UpdateContainerRequest) => ({
          container: containerToWire(
            await store.update(ctx, containerFromWire(req.container), req.updateMask ?? []),
          ),
        }),
        opts('Update'),
      ),
      Delete: unary(async (ctx, req: wire.containers.DeleteContainerRequest) => {
        await store.delete(ctx, req.id);
        return {};
      }, opts('Delete')),
    });
  }
}
