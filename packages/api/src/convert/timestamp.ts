import type { Timestamp } from '../gen/google/protobuf/timestamp';

export type { Timestamp };

/** A Date as google.protobuf.Timestamp. The one conversion to the wire; Dates carry milliseconds. */
export function toTimestamp(date: Date): Timestamp {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

/**
 * A google.protobuf.Timestamp as a Date; an absent one is the Unix epoch, as Go's
 * protobuf.FromTimestamp(nil) reads it. The one conversion from the wire.
 */
export function fromTimestamp(ts: Timestamp | null | undefined): Date {
  if (!ts) return new Date(0);
  return new Date(Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1_000_000));
}
