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
