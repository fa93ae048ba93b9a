import { grpcService, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import type { Namespace, NamespacesLocal } from './local';

export const NAMESPACES_SERVICE = 'containerd.services.namespaces.v1.Namespaces';

const fromWire = (ns: wire.namespaces.Namespace | undefined): Namespace => ({
  name: ns?.name ?? '',
  labels: ns?.labels ?? {},
});

/** containerd.services.namespaces.v1.Namespaces. */
export class NamespacesServer implements GrpcService {
  constructor(
    private readonly local: NamespacesLocal,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const l = this.local;
    const opts = (method: string) => ({ log: this.log, method: `Namespaces/${method}` });
    server.addService(grpcService(NAMESPACES_SERVICE), {
      Get: unary(
        async (ctx, req: wire.namespaces.GetNamespaceRequest) => ({ namespace: await l.get(ctx, req.name) }),
        opts('Get'),
      ),
      List: unary(async (ctx) => ({ namespaces: await l.list(ctx) }), opts('List')),
      Create: unary(
        async (ctx, req: wire.namespaces.CreateNamespaceRequest) => ({
          namespace: await l.create(ctx, fromWire(req.namespace)),
        }),
        opts('Create'),
      ),
      Update: unary(
        async (ctx, req: wire.namespaces.UpdateNamespaceRequest) => ({
          namespace: await l.update(ctx, fromWire(req.namespace), req.updateMask ?? []),
        }),
        opts('Update'),
      ),
      Delete: unary(async (ctx, req: wire.namespaces.DeleteNamespaceRequest) => {
        await l.delete(ctx, req.name);
        return {};
      }, opts('Delete')),
    });
  }
}
