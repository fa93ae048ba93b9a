import { grpcService } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';

export const VERSION_SERVICE = 'containerd.services.version.v1.Version';

/** containerd.services.version.v1.Version: what `ctr version` prints for the server. */
export class VersionServer implements GrpcService {
  constructor(
    private readonly version: string,
    private readonly revision: string,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    server.addService(grpcService(VERSION_SERVICE), {
      Version: unary(() => ({ version: this.version, revision: this.revision }), {
        log: this.log,
        method: 'Version/Version',
      }),
    });
  }
}
