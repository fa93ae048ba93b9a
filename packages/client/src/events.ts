import type { AnyValue, Context, Envelope } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { serverStream, type Timestamp, toDate, toTimestamp, unary } from './rpc';

interface EnvelopeMessage {
  timestamp: Timestamp | null;
  namespace: string;
  topic: string;
  event: AnyValue | null;
}

const envelopeFromMessage = (m: EnvelopeMessage): Envelope => ({
  timestamp: toDate(m.timestamp),
  namespace: m.namespace,
  topic: m.topic,
  event: { typeUrl: m.event?.typeUrl ?? '', value: Buffer.from(m.event?.value ?? []) },
});

/** containerd.services.events.v1.Events: publish, forward and subscribe, as containerd's remote events. */
export class RemoteEventService {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  /** Publishes an already encoded event under ctx's namespace. */
  async publish(ctx: Context, topic: string, event: AnyValue): Promise<void> {
    await unary(this.client, 'Publish', { topic, event }, ctx, this.target);
  }

  /** Forwards an envelope made elsewhere, its namespace and timestamp kept. */
  async forward(ctx: Context, envelope: Envelope): Promise<void> {
    await unary(
      this.client,
      'Forward',
      {
        envelope: {
          timestamp: toTimestamp(envelope.timestamp),
          namespace: envelope.namespace,
          topic: envelope.topic,
          event: envelope.event,
        },
      },
      ctx,
      this.target,
    );
  }

  /**
   * Every namespace's envelopes matching any of filters (`topic`, `namespace`,
   * `event.<field>`), until ctx's signal fires or the consumer stops iterating.
   */
  async *subscribe(ctx: Context, filters: string[] = []): AsyncGenerator<Envelope> {
    for await (const m of serverStream<EnvelopeMessage>(
      this.client,
      'Subscribe',
      { filters },
      ctx,
      this.target,
    )) {
      yield envelopeFromMessage(m);
    }
  }
}
