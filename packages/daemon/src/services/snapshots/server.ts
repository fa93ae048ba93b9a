import { snapshotsServiceDefinition, snapshotsServiceHandlers } from '@berth/snapshotter';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import type { SnapshotsLocal } from './local';

/** containerd.services.snapshots.v1.Snapshots: the snapshotter package's handlers over the service layer. */
export class SnapshotsServer implements GrpcService {
  constructor(
    private readonly local: SnapshotsLocal,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    server.addService(
      snapshotsServiceDefinition(),
      snapshotsServiceHandlers((name) => this.local.get(name), {
        onUnexpectedError: (method, err) =>
          this.log
            ?.with({ method: `Snapshots/${method}`, error: (err as Error)?.stack ?? String(err) })
            .error('unexpected error'),
      }),
    );
  }
}
