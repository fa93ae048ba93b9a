import { type AnyMessage, anyFromWire, grpcService, type wire } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import type { TransferLocal } from './local';

export const TRANSFER_SERVICE = 'containerd.services.transfer.v1.Transfer';

const anyOf = (m: wire.protobuf.Any | undefined): AnyMessage =>
  anyFromWire(m) ?? { typeUrl: '', value: Buffer.alloc(0) };

/** containerd.services.transfer.v1.Transfer. */
export class TransferServer implements GrpcService {
  constructor(
    private readonly local: TransferLocal,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const local = this.local;
    server.addService(grpcService(TRANSFER_SERVICE), {
      Transfer: unary(
        async (ctx, req: wire.transfer.TransferRequest) => {
          await local.transfer(ctx, anyOf(req.source), anyOf(req.destination), {
            progressStream: req.options?.progressStream || undefined,
          });
          return {};
        },
        { log: this.log, method: 'Transfer/Transfer' },
      ),
    });
  }
}
