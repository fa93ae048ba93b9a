import { InvalidArgumentError } from './errors';

/**
 * Times with nanoseconds, as containerd keeps them. A `Date` holds whole milliseconds;
 * `NanoDate` is a `Date` (so everything that formats, compares or sorts Dates keeps
 * working) that also carries the nanoseconds past its millisecond. `toNanos()` gives the
 * exact instant; `toTimestamp`/`fromTimestamp` are the only conversions to and from the
 * wire's google.protobuf.Timestamp.
 */

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;
/** The range of a Date: ±8.64e15 ms around the epoch. */
const MAX_DATE_MS = 8_640_000_000_000_000n;

/** Floor division (BigInt `/` truncates toward zero). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

export class NanoDate extends Date {
  readonly #ns: bigint;
  /** The millisecond #ns belongs to; a Date setter that moved the time makes #ns stale. */
  readonly #ms: number;

  /** The instant `epochNanos` nanoseconds after 1970-01-01T00:00:00Z (negative: before). */
  constructor(epochNanos: bigint) {
    const ms = floorDiv(epochNanos, NS_PER_MS);
    if (ms > MAX_DATE_MS || ms < -MAX_DATE_MS) {
      throw new InvalidArgumentError(`time ${epochNanos}ns since the epoch is out of a Date's range`);
    }
    super(Number(ms));
    this.#ns = epochNanos;
    this.#ms = Number(ms);
  }

  static fromNanos(epochNanos: bigint): NanoDate {
    return new NanoDate(epochNanos);
  }

  /** A NanoDate for any Date: itself when it is one, else its milliseconds. */
  static from(d: Date): NanoDate {
    return d instanceof NanoDate ? d : new NanoDate(toNanos(d));
  }

  /** Nanoseconds since the epoch, exactly. */
  toNanos(): bigint {
    const ms = this.getTime();
    if (ms === this.#ms) return this.#ns;
    if (Number.isNaN(ms)) throw new InvalidArgumentError('invalid date has no nanoseconds');
    return BigInt(ms) * NS_PER_MS;
  }

  /** The nanoseconds within the second, 0..999999999 (Go's Time.Nanosecond). */
  get nanosecond(): number {
    const ns = this.toNanos();
    return Number(ns - floorDiv(ns, NS_PER_S) * NS_PER_S);
  }
}

/** Nanoseconds since the epoch of any Date (a plain Date's sub-millisecond part is 0). */
export function toNanos(d: Date): bigint {
  if (d instanceof NanoDate) return d.toNanos();
  const ms = d.getTime();
  if (Number.isNaN(ms)) throw new InvalidArgumentError('invalid date has no nanoseconds');
  return BigInt(ms) * NS_PER_MS;
}

/** google.protobuf.Timestamp as the proto loader shapes it (int64 as number). */
export interface TimestampMessage {
  seconds: number;
  nanos: number;
}

/** A Date (with its nanoseconds when it is a NanoDate) as google.protobuf.Timestamp. */
export function toTimestamp(d: Date): TimestampMessage {
  const ns = toNanos(d);
  const seconds = floorDiv(ns, NS_PER_S);
  return { seconds: Number(seconds), nanos: Number(ns - seconds * NS_PER_S) };
}

/**
 * google.protobuf.Timestamp as a NanoDate; an absent one is the Unix epoch, as Go's
 * protobuf.FromTimestamp(nil) reads it. `seconds` may arrive as a number, a decimal string
 * or a bigint. Nanos outside 0..999999999, or a time a Date cannot hold, are InvalidArgument.
 */
export function fromTimestamp(
  t: { seconds: number | string | bigint; nanos: number } | null | undefined,
): NanoDate {
  if (!t) return new NanoDate(0n);
  const { seconds, nanos } = t;
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw new InvalidArgumentError(`timestamp nanos ${nanos} out of range 0..999999999`);
  }
  let s: bigint;
  try {
    s = BigInt(seconds);
  } catch {
    throw new InvalidArgumentError(`timestamp seconds ${String(seconds)} is not an integer`);
  }
  return new NanoDate(s * NS_PER_S + BigInt(nanos));
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parses RFC 3339 with up to nine fractional digits (Go's RFC3339Nano); undefined when malformed. */
export function parseRFC3339(text: string): NanoDate | undefined {
  const m = RFC3339.exec(text.trim());
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  const frac = BigInt((m[2] ?? '').padEnd(9, '0'));
  return new NanoDate(BigInt(ms) * NS_PER_MS + frac);
}

/** RFC 3339 in UTC with nanoseconds, trailing zeros trimmed: Go's time.RFC3339Nano. */
export function formatRFC3339Nano(d: Date): string {
  const ns = toNanos(d);
  const seconds = floorDiv(ns, NS_PER_S);
  const frac = Number(ns - seconds * NS_PER_S);
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  const digits = frac === 0 ? '' : `.${String(frac).padStart(9, '0').replace(/0+$/, '')}`;
  return `${base}${digits}Z`;
}

// ---- the clock ----

/**
 * Wall time in nanoseconds, from the monotonic `process.hrtime` anchored to the wall clock.
 * Date.now() only has milliseconds, but the instant it turns to the next one is exact: we
 * spin to that edge once and note hrtime there (see calibrate), which pins the anchor to
 * about a microsecond (clients compare our times with their own nanosecond clocks across
 * one RPC). performance.timeOrigin is no anchor: on Node 20 it was seen 0.7 ms off.
 * Slewing (NTP) moves both clocks alike; a step of the wall clock is seen when Date.now()
 * and our time disagree by more than 2 ms, and the anchor is taken again.
 */
let anchor: bigint | undefined;
let last = 0n;

/** Longest spin for an edge: more than one millisecond means Date.now() is not moving. */
const SPIN_LIMIT_NS = 2_000_000n;
/** An edge seen within this much of hrtime is taken at once (the usual case). */
const GOOD_EDGE_NS = 20_000n;
/** Edges tried for a good one, when the process keeps being descheduled while it spins. */
const EDGES = 8;

/**
 * The offset from hrtime to wall time, from the instant Date.now() turns to the next ms.
 * Each turn is bracketed by hrtime read around the two Date.now() calls that saw it; a
 * process descheduled while it spins sees the turn late, and an anchor taken then runs
 * behind the wall clock by as long as it waited (0.5 ms was seen on a busy machine, enough
 * for containerd's suite to find an update dated before it was made). So the narrowest
 * bracket of a few turns is used, its middle taken as the instant.
 */
function calibrate(): bigint {
  let best: { offset: bigint; width: bigint } | undefined;
  for (let edge = 0; edge < EDGES; edge++) {
    let prevMs = Date.now();
    let prevBefore = process.hrtime.bigint();
    const until = prevBefore + SPIN_LIMIT_NS;
    for (;;) {
      const before = process.hrtime.bigint();
      const ms = Date.now();
      const after = process.hrtime.bigint();
      if (ms !== prevMs) {
        const width = after - prevBefore;
        const offset = BigInt(ms) * NS_PER_MS - (prevBefore + width / 2n);
        if (best === undefined || width < best.width) best = { offset, width };
        break;
      }
      if (after > until) return best?.offset ?? BigInt(ms) * NS_PER_MS - after;
      prevMs = ms;
      prevBefore = before;
    }
    if (best.width <= GOOD_EDGE_NS) break;
  }
  return best!.offset;
}

/**
 * Now, in nanoseconds since the epoch: strictly increasing within the process (two calls
 * never answer the same or an earlier value, so an update is always after what it updates),
 * and following the wall clock. After the wall clock steps back, time holds still (one
 * nanosecond per call) until the wall clock catches up, rather than run backwards.
 */
export function nowNanos(): bigint {
  if (anchor === undefined) anchor = calibrate();
  let ns = anchor + process.hrtime.bigint();
  const drift = BigInt(Date.now()) - floorDiv(ns, NS_PER_MS);
  if (drift > 2n || drift < -2n) {
    anchor = calibrate();
    ns = anchor + process.hrtime.bigint();
  }
  if (ns <= last) ns = last + 1n;
  last = ns;
  return ns;
}

/** Now, as a NanoDate (see nowNanos). */
export function preciseNow(): NanoDate {
  return new NanoDate(nowNanos());
}
