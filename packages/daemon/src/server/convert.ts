/** Conversions between berth's JS values and the loader's message shapes. */

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export function toTimestamp(d: Date | undefined): Timestamp | null {
  if (!d) return null;
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function fromTimestamp(t: Timestamp | null | undefined): Date | undefined {
  if (!t) return undefined;
  return new Date(Number(t.seconds) * 1000 + Math.floor(Number(t.nanos) / 1_000_000));
}

/** google.protobuf.FieldMask as the loader gives it (absent or `{paths}`). */
export const maskPaths = (mask: { paths?: string[] } | null | undefined): string[] => mask?.paths ?? [];

export const EMPTY = {};
