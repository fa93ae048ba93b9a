import { grpcService, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import { type IntrospectionLocal, pidNamespace } from './local';

export const INTROSPECTION_SERVICE = 'containerd.services.introspection.v1.Introspection';

/** containerd.services.introspection.v1.Introspection: `ctr plugins ls`, the server uuid. */
export class IntrospectionServer implements GrpcService {
  constructor(
    private readonly local: IntrospectionLocal,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const opts = (method: string) => ({ log: this.log, method: `Introspection/${method}` });
    server.addService(grpcService(INTROSPECTION_SERVICE), {
      Plugins: unary(
        (_ctx, req: wire.introspection.PluginsRequest) => ({ plugins: this.local.list(req.filters ?? []) }),
        opts('Plugins'),
      ),
      // pid and pidns are newer containerd fields; a 1.6 proto drops them on encode.
      Server: unary(
        () => ({ uuid: this.local.serverUuid(), pid: process.pid, pidns: pidNamespace() }),
        opts('Server'),
      ),
    });
  }
}
