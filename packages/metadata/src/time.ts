import { NanoDate } from '@berth/api';

/**
 * Times are INTEGER nanoseconds since the epoch (schema v4; milliseconds before). They pass
 * 2^53, so they are bound as BigInt and read back as decimal text: better-sqlite3's
 * safeIntegers would turn every integer of the row (sizes, ids, sequence numbers) into a
 * BigInt, where only the times need it.
 */
export function nsColumn(column: string, as = column.replace(/^.*\./, '')): string {
  return `CAST(${column} AS TEXT) AS ${as}`;
}

/** A time column selected with nsColumn, as a NanoDate. */
export function nsDate(value: string): NanoDate {
  return new NanoDate(BigInt(value));
}
