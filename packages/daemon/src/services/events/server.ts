import {
  type AnyValue,
  type Context,
  FailedPreconditionError,
  grpcService,
  InvalidArgumentError,
  isFailedPrecondition,
  requireNamespace,
} from '@berth/api';
import type { Exchange, ExchangeEnvelope } from '../../events/exchange';
import type { Logger } from '../../log';
import { EMPTY, fromTimestamp, type Timestamp, toTimestamp } from '../../server/convert';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { send, serverStream, unary } from '../../server/handlers';

export const EVENTS_SERVICE = 'containerd.services.events.v1.Events';

interface EnvelopeMsg {
  timestamp: Timestamp | null;
  namespace: string;
  topic: string;
  event: AnyValue | null;
}

const anyOf = (v: AnyValue | null | undefined): AnyValue | undefined =>
  v ? { typeUrl: v.typeUrl ?? '', value: Buffer.from(v.value ?? []) } : undefined;

export const envelopeToMsg = (env: ExchangeEnvelope): EnvelopeMsg => ({
  timestamp: toTimestamp(env.timestamp),
  namespace: env.namespace,
  topic: env.topic,
  event: env.event,
});

/** The namespace a published event goes out under, in containerd's words when there is none. */
function publishNamespace(ctx: Context): string {
  try {
    return requireNamespace(ctx);
  } catch (err) {
    const msg = `failed publishing event: ${(err as Error).message}`;
    throw isFailedPrecondition(err) ? new FailedPreconditionError(msg) : new InvalidArgumentError(msg);
  }
}

/**
 * containerd.services.events.v1.Events over the daemon's exchange: Publish (an event from a
 * client, in the call's namespace), Forward (an envelope made elsewhere, kept as is) and
 * Subscribe (every namespace's envelopes matching the filters, until the client goes away).
 */
export class EventsServer implements GrpcService {
  constructor(
    private readonly exchange: Exchange,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const exchange = this.exchange;
    const opts = (method: string) => ({ log: this.log, method: `Events/${method}` });
    server.addService(grpcService(EVENTS_SERVICE), {
      Publish: unary(async (ctx, req: { topic: string; event: AnyValue | null }) => {
        const namespace = publishNamespace(ctx);
        const event = anyOf(req.event);
        if (!event || event.typeUrl === '') {
          throw new InvalidArgumentError(`failed publishing event on "${req.topic}": event must be set`);
        }
        await exchange.forward({ timestamp: new Date(), namespace, topic: req.topic, event });
        return EMPTY;
      }, opts('Publish')),
      Forward: unary(async (_ctx, req: { envelope: EnvelopeMsg | null }) => {
        const env = req.envelope;
        if (!env) throw new InvalidArgumentError('forward: envelope must be set');
        const event = anyOf(env.event);
        if (!event) throw new InvalidArgumentError(`forward of "${env.topic}": event must be set`);
        await exchange.forward({
          timestamp: fromTimestamp(env.timestamp) ?? (undefined as unknown as Date),
          namespace: env.namespace,
          topic: env.topic,
          event,
        });
        return EMPTY;
      }, opts('Forward')),
      Subscribe: serverStream(async (ctx, req: { filters: string[] }, call) => {
        const sub = exchange.subscribe(req.filters ?? [], ctx.signal);
        try {
          for await (const env of sub) {
            if (call.cancelled) break;
            await send(call, envelopeToMsg(env));
          }
        } finally {
          sub.close();
        }
      }, opts('Subscribe')),
    });
  }
}
