import type { Timestamp } from '../gen/google/protobuf/timestamp';

/**
 * google.protobuf.Timestamp. The conversions to and from it (toTimestamp, fromTimestamp)
 * are time.ts's, which keep nanoseconds and which berth's shim loads alone.
 */
export type { Timestamp };
