import {
  anyFromWire,
  type Context,
  envelopeToWire,
  FailedPreconditionError,
  fromTimestamp,
  grpcService,
  InvalidArgumentError,
  isFailedPrecondition,
  preciseNow,
  requireNamespace,
  type wire,
} from '@berth/api';
import type { Exchange } from '../../events/exchange';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { send, serverStream, unary } from '../../server/handlers';

export const EVENTS_SERVICE = 'containerd.services.events.v1.Events';

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
      Publish: unary(async (ctx, req: wire.eventsService.PublishRequest) => {
        const namespace = publishNamespace(ctx);
        const event = anyFromWire(req.event);
        if (!event || event.typeUrl === '') {
          throw new InvalidArgumentError(`failed publishing event on "${req.topic}": event must be set`);
        }
        await exchange.forward({ timestamp: preciseNow(), namespace, topic: req.topic, event });
        return {};
      }, opts('Publish')),
      Forward: unary(async (_ctx, req: wire.eventsService.ForwardRequest) => {
        const env = req.envelope;
        if (!env) throw new InvalidArgumentError('forward: envelope must be set');
        // As the ttrpc Forward (runtime/events-server): containerd checks namespace, topic and
        // timestamp, never the event; a missing one is forwarded empty.
        const event = anyFromWire(env.event) ?? { typeUrl: '', value: Buffer.alloc(0) };
        await exchange.forward({
          // An envelope without a timestamp is refused by the exchange, in containerd's words.
          timestamp: env.timestamp ? fromTimestamp(env.timestamp) : (undefined as unknown as Date),
          namespace: env.namespace,
          topic: env.topic,
          event,
        });
        return {};
      }, opts('Forward')),
      Subscribe: serverStream(async (ctx, req: wire.eventsService.SubscribeRequest, call) => {
        const sub = exchange.subscribe(req.filters ?? [], ctx.signal);
        try {
          for await (const env of sub) {
            if (call.cancelled) break;
            await send(call, envelopeToWire(env));
          }
        } finally {
          sub.close();
        }
      }, opts('Subscribe')),
    });
  }
}
