import { grpcService, type Lease, type LeaseManager, type LeaseResource } from '@berth/api';
import type { Logger } from '../../log';
import { EMPTY, toTimestamp } from '../../server/convert';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';

export const LEASES_SERVICE = 'containerd.services.leases.v1.Leases';

const leaseMsg = (l: Lease) => ({ id: l.id, createdAt: toTimestamp(l.createdAt), labels: l.labels });
const resource = (r: { id?: string; type?: string } | null | undefined): LeaseResource => ({
  id: r?.id ?? '',
  type: r?.type ?? '',
});

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
      Create: unary(async (ctx, req: { id: string; labels: Record<string, string> }) => {
        const lease = await lm.create(ctx, { id: req.id || undefined, labels: req.labels });
        return { lease: leaseMsg(lease) };
      }, opts('Create')),
      Delete: unary(async (ctx, req: { id: string; sync: boolean }) => {
        await lm.delete(ctx, req.id, { sync: req.sync });
        return EMPTY;
      }, opts('Delete')),
      List: unary(
        async (ctx, req: { filters: string[] }) => ({
          leases: (await lm.list(ctx, req.filters)).map(leaseMsg),
        }),
        opts('List'),
      ),
      AddResource: unary(async (ctx, req: { id: string; resource: LeaseResource | null }) => {
        await lm.addResource(ctx, req.id, resource(req.resource));
        return EMPTY;
      }, opts('AddResource')),
      DeleteResource: unary(async (ctx, req: { id: string; resource: LeaseResource | null }) => {
        await lm.deleteResource(ctx, req.id, resource(req.resource));
        return EMPTY;
      }, opts('DeleteResource')),
      ListResources: unary(
        async (ctx, req: { id: string }) => ({
          resources: (await lm.listResources(ctx, req.id)).map((r) => ({ id: r.id, type: r.type })),
        }),
        opts('ListResources'),
      ),
    });
  }
}
