import type { wire } from '@berth/api';

/** google.protobuf.Timestamp as the generated codecs of @berth/api shape it. */
export type Timestamp = wire.protobuf.Timestamp;

/**
 * Now as a Timestamp. Not @berth/api's toTimestamp: `start` and `delete` (cleanup) run once
 * per container and must not load @berth/api at all (test/shim.int.test.ts checks).
 */
export function timestampNow(): Timestamp {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}
