import type { Context } from './context';

/** An event as the Events service carries it: the payload is a protobuf Any. */
export interface Envelope {
  timestamp: Date;
  namespace: string;
  topic: string;
  event: { typeUrl: string; value: Buffer };
}

/** Publishes a typed event; the exchange encodes it (see events.proto names). */
export interface Publisher {
  publish(ctx: Context, topic: string, typeName: string, event: Record<string, unknown>): Promise<void>;
}

/** Topics containerd uses, for the services this repository implements. */
export const Topics = {
  namespaceCreate: '/namespaces/create',
  namespaceUpdate: '/namespaces/update',
  namespaceDelete: '/namespaces/delete',
  contentCreate: '/content/create',
  contentDelete: '/content/delete',
  snapshotPrepare: '/snapshot/prepare',
  snapshotCommit: '/snapshot/commit',
  snapshotRemove: '/snapshot/remove',
  imageCreate: '/images/create',
  imageUpdate: '/images/update',
  imageDelete: '/images/delete',
  containerCreate: '/containers/create',
  containerUpdate: '/containers/update',
  containerDelete: '/containers/delete',
} as const;

/** An envelope as an in-process subscriber receives it: the payload also decoded. */
export interface ReceivedEnvelope extends Envelope {
  readonly decoded?: Record<string, unknown>;
}

/** A live subscription: iterate it for envelopes; close() (or the signal) ends the iteration. */
export interface EventSubscription extends AsyncIterable<ReceivedEnvelope> {
  close(): void;
}

/** The daemon's event exchange as in-process plugins subscribe to it (filters as containerd's). */
export interface EventSubscriber {
  subscribe(filters?: readonly string[], signal?: AbortSignal): EventSubscription;
}
