import { descriptorFromWire, descriptorToWire, grpcService, mountFromWire, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import type { Differ } from './walking';

export const DIFF_SERVICE = 'containerd.services.diff.v1.Diff';

/** containerd.services.diff.v1.Diff over the diff service layer. */
export class DiffServer implements GrpcService {
  constructor(
    private readonly differ: Differ,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const opts = (method: string) => ({ log: this.log, method: `Diff/${method}` });
    server.addService(grpcService(DIFF_SERVICE), {
      // payloads (stream processor data) are accepted and unused: berth has no stream processors.
      Apply: unary(async (ctx, req: wire.diff.ApplyRequest) => {
        const applied = await this.differ.apply(
          ctx,
          descriptorFromWire(req.diff),
          req.mounts.map(mountFromWire),
        );
        return { applied: descriptorToWire(applied) };
      }, opts('Apply')),
      Diff: unary(async (ctx, req: wire.diff.DiffRequest) => {
        const desc = await this.differ.compare(
          ctx,
          req.left.map(mountFromWire),
          req.right.map(mountFromWire),
          {
            mediaType: req.mediaType || undefined,
            ref: req.ref || undefined,
            labels: req.labels && Object.keys(req.labels).length > 0 ? req.labels : undefined,
          },
        );
        return { diff: descriptorToWire(desc) };
      }, opts('Diff')),
    });
  }
}
