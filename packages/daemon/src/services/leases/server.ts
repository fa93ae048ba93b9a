import { grpcService, type LeaseManager, leaseResourceFromWire, leaseToWire, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';

export const LEASES_SERVICE = 'containerd.services.leases.v1.Leases';

/** containerd.services.leases.v1.Leases. */
export class LeasesServer implements GrpcService {
  constructor(
    private readonly leases: LeaseManager,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const lm = this.leases;
    const opts = (method: string) => ({ log: this.log, method: `Leases/${method}` });
    server.addService(grpcService(LEASES_SERVICE), {
      Create: unary(async (ctx, req: wire.leases.CreateRequest) => {
        const lease = await lm.create(ctx, { id: req.id || undefined, labels: req.labels });
        return { lease: leaseToWire(lease) };
      }, opts('Create')),
      Delete: unary(async (ctx, req: wire.leases.DeleteRequest) => {
        await lm.delete(ctx, req.id, { sync: req.sync });
        return {};
      }, opts('Delete')),
      List: unary(
        async (ctx, req: wire.leases.ListRequest) => ({
          leases: (await lm.list(ctx, req.filters)).map(leaseToWire),
        }),
        opts('List'),
      ),
      AddResource: unary(async (ctx, req: wire.leases.AddResourceRequest) => {
        await lm.addResource(ctx, req.id, leaseResourceFromWire(req.resource));
        return {};
      }, opts('AddResource')),
      DeleteResource: unary(async (ctx, req: wire.leases.DeleteResourceRequest) => {
        await lm.deleteResource(ctx, req.id, leaseResourceFromWire(req.resource));
        return {};
      }, opts('DeleteResource')),
      ListResources: unary(
        async (ctx, req: wire.leases.ListResourcesRequest) => ({
          resources: (await lm.listResources(ctx, req.id)).map((r) => ({ id: r.id, type: r.type })),
        }),
        opts('ListResources'),
      ),
    });
  }
}
