import {
  type AnyValue,
  type Context,
  type Envelope,
  envelopeFromWire,
  envelopeToWire,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { serverStream, unary } from './rpc';

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
        envelope: envelopeToWire(envelope),
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
    for await (const m of serverStream<wire.eventsService.Envelope>(
      this.client,
      'Subscribe',
      { filters },
      ctx,
      this.target,
    )) {
      yield envelopeFromWire(m);
    }
  }
}
