import { grpcService, NotFoundError } from '@berth/api';
import { type Handler, type ServerStreamCall, type ServiceRegistrar, serverStream, unary } from './server';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/**
 * grpc.health.v1.Health as grpc-go's health server answers it: Check of a name never
 * set is NOT_FOUND "unknown service"; Watch sends the status now (SERVICE_UNKNOWN for a
 * name never set) and each change after, until the client goes away.
 */
export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<(s: ServingStatus) => void>>();

  /** Starts with the server as a whole ("") NOT_SERVING. */
  constructor() {
    this.statuses.set('', 'NOT_SERVING');
  }

  setStatus(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) w(status);
  }

  status(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  handlers(): Record<'Check' | 'Watch', Handler> {
    return {
      Check: unary((_ctx, req: { service?: string }) => {
        const status = this.statuses.get(req.service ?? '');
        if (status === undefined) throw new NotFoundError('unknown service');
        return { status };
      }),
      Watch: serverStream(async (ctx, req: { service?: string }, call: ServerStreamCall) => {
        const name = req.service ?? '';
        const set = this.watchers.get(name) ?? new Set();
        this.watchers.set(name, set);
        await new Promise<void>((resolve) => {
          const send = (status: ServingStatus) => {
            call.write({ status });
          };
          set.add(send);
          send(this.statuses.get(name) ?? 'SERVICE_UNKNOWN');
          const done = () => {
            set.delete(send);
            if (set.size === 0) this.watchers.delete(name);
            resolve();
          };
          if (ctx.signal?.aborted) done();
          else ctx.signal?.addEventListener('abort', done, { once: true });
        });
      }),
    };
  }

  register(server: ServiceRegistrar): void {
    server.addService(grpcService(HEALTH_SERVICE), this.handlers());
  }
}
