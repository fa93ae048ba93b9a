import { grpcService } from '@berth/api';
import type { Logger } from '../../log';
import { EMPTY, maskPaths } from '../../server/convert';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import type { Namespace, NamespacesLocal } from './local';

export const NAMESPACES_SERVICE = 'containerd.services.namespaces.v1.Namespaces';

interface NamespaceMsg {
  name: string;
  labels: Record<string, string>;
}

const fromMsg = (ns: NamespaceMsg | null | undefined): Namespace => ({
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
        async (ctx, req: { name: string }) => ({ namespace: await l.get(ctx, req.name) }),
        opts('Get'),
      ),
      List: unary(async (ctx) => ({ namespaces: await l.list(ctx) }), opts('List')),
      Create: unary(
        async (ctx, req: { namespace: NamespaceMsg | null }) => ({
          namespace: await l.create(ctx, fromMsg(req.namespace)),
        }),
        opts('Create'),
      ),
      Update: unary(
        async (ctx, req: { namespace: NamespaceMsg | null; updateMask: { paths: string[] } | null }) => ({
          namespace: await l.update(ctx, fromMsg(req.namespace), maskPaths(req.updateMask)),
        }),
        opts('Update'),
      ),
      Delete: unary(async (ctx, req: { name: string }) => {
        await l.delete(ctx, req.name);
        return EMPTY;
      }, opts('Delete')),
    });
  }
}
