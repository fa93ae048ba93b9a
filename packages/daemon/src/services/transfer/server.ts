import { type AnyMessage, grpcService } from '@berth/api';
import type { Logger } from '../../log';
import { EMPTY } from '../../server/convert';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import type { TransferLocal } from './local';

export const TRANSFER_SERVICE = 'containerd.services.transfer.v1.Transfer';

interface TransferRequestMsg {
  source: AnyMessage | null;
  destination: AnyMessage | null;
  options: { progressStream: string } | null;
}

const anyOf = (m: AnyMessage | null): AnyMessage =>
  m
    ? { typeUrl: m.typeUrl ?? '', value: Buffer.from(m.value ?? []) }
    : { typeUrl: '', value: Buffer.alloc(0) };

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
        async (ctx, req: TransferRequestMsg) => {
          await local.transfer(ctx, anyOf(req.source), anyOf(req.destination), {
            progressStream: req.options?.progressStream || undefined,
          });
          return EMPTY;
        },
        { log: this.log, method: 'Transfer/Transfer' },
      ),
    });
  }
}
