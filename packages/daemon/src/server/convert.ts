/** Conversions between berth's JS values and the loader's message shapes. */

import { fromTimestamp as fromWire, type TimestampMessage, toTimestamp as toWire } from '@berth/api';

/** google.protobuf.Timestamp. The conversion (nanoseconds kept) is @berth/api's; these map absence. */
export type Timestamp = TimestampMessage;

export function toTimestamp(d: Date | undefined): Timestamp | null {
  return d ? toWire(d) : null;
}

export function fromTimestamp(t: Timestamp | null | undefined): Date | undefined {
  return t ? fromWire(t) : undefined;
}

/** google.protobuf.FieldMask as the loader gives it (absent or `{paths}`). */
export const maskPaths = (mask: { paths?: string[] } | null | undefined): string[] => mask?.paths ?? [];

export const EMPTY = {};
