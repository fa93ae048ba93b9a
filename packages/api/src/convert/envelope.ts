import type { Envelope } from '../events';
import type { Envelope as EnvelopeMessage } from '../gen/containerd/services/events/v1/events';
import { fromTimestamp, toTimestamp } from '../time';
import { anyFromWire } from './any';

export function envelopeToWire(env: Envelope): EnvelopeMessage {
  return {
    timestamp: toTimestamp(env.timestamp),
    namespace: env.namespace,
    topic: env.topic,
    event: env.event,
  };
}

/** An envelope off the wire; an absent event is an empty Any. */
export function envelopeFromWire(m: EnvelopeMessage): Envelope {
  return {
    timestamp: fromTimestamp(m.timestamp),
    namespace: m.namespace,
    topic: m.topic,
    event: anyFromWire(m.event) ?? { typeUrl: '', value: Buffer.alloc(0) },
  };
}
