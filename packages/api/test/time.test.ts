import {
  formatRFC3339Nano,
  fromTimestamp,
  InvalidArgumentError,
  NanoDate,
  nowNanos,
  parseRFC3339,
  preciseNow,
  toNanos,
  toTimestamp,
} from '@berth/api';

describe('NanoDate', () => {
  it('is a Date of the millisecond and keeps the nanoseconds past it', () => {
    const d = NanoDate.fromNanos(1_765_020_325_915_261_957n);
    expect(d).toBeInstanceOf(Date);
    expect(d.getTime()).toBe(1_765_020_325_915);
    expect(d.toISOString()).toBe('2025-12-06T11:25:25.915Z');
    expect(d.toNanos()).toBe(1_765_020_325_915_261_957n);
    expect(d.nanosecond).toBe(915_261_957);
  });

  it('floors before the epoch: the Date is the millisecond at or before the instant', () => {
    const d = NanoDate.fromNanos(-1n);
    expect(d.getTime()).toBe(-1);
    expect(d.toNanos()).toBe(-1n);
    expect(d.nanosecond).toBe(999_999_999);
    expect(NanoDate.fromNanos(-1_000_000n).getTime()).toBe(-1);
    expect(NanoDate.fromNanos(-1_000_001n).getTime()).toBe(-2);
  });

  it('drops stale nanoseconds once a Date setter moves it', () => {
    const d = NanoDate.fromNanos(5_000_123n);
    d.setTime(7);
    expect(d.toNanos()).toBe(7_000_000n);
  });

  it('rejects an instant a Date cannot hold, naming it', () => {
    expect(() => NanoDate.fromNanos(8_640_000_000_000_001_000_000n)).toThrow(InvalidArgumentError);
    expect(() => NanoDate.fromNanos(8_640_000_000_000_001_000_000n)).toThrow(/8640000000000001000000ns/);
  });

  it('from() keeps a NanoDate and widens a plain Date', () => {
    const n = NanoDate.fromNanos(3n);
    expect(NanoDate.from(n)).toBe(n);
    expect(NanoDate.from(new Date(12)).toNanos()).toBe(12_000_000n);
    expect(toNanos(new Date(-5))).toBe(-5_000_000n);
    expect(() => toNanos(new Date(Number.NaN))).toThrow(InvalidArgumentError);
  });
});

describe('toTimestamp / fromTimestamp', () => {
  const cases: [bigint, number, number][] = [
    [0n, 0, 0],
    [1n, 0, 1],
    [999_999_999n, 0, 999_999_999],
    [1_000_000_000n, 1, 0],
    [-1n, -1, 999_999_999],
    [-1_000_000_000n, -1, 0],
    [-1_000_000_001n, -2, 999_999_999],
    [1_765_020_325_915_261_957n, 1_765_020_325, 915_261_957],
    // Go's zero time.Time: 0001-01-01T00:00:00Z
    [-62_135_596_800_000_000_000n, -62_135_596_800, 0],
  ];

  it.each(cases)('%p ns <-> {seconds: %p, nanos: %p} exactly', (ns, seconds, nanos) => {
    const ts = toTimestamp(NanoDate.fromNanos(ns));
    expect(ts).toEqual({ seconds, nanos });
    expect(fromTimestamp(ts).toNanos()).toBe(ns);
  });

  it('converts a plain Date by its milliseconds', () => {
    expect(toTimestamp(new Date(-1))).toEqual({ seconds: -1, nanos: 999_000_000 });
    expect(toTimestamp(new Date(1500))).toEqual({ seconds: 1, nanos: 500_000_000 });
  });

  it('takes int64 seconds as a number, string or bigint', () => {
    expect(fromTimestamp({ seconds: '12', nanos: 3 }).toNanos()).toBe(12_000_000_003n);
    expect(fromTimestamp({ seconds: 12n, nanos: 3 }).toNanos()).toBe(12_000_000_003n);
  });

  it('rejects nanos outside 0..999999999 and seconds that are not integers', () => {
    for (const nanos of [-1, 1_000_000_000, 1.5, Number.NaN]) {
      expect(() => fromTimestamp({ seconds: 0, nanos })).toThrow(InvalidArgumentError);
      expect(() => fromTimestamp({ seconds: 0, nanos })).toThrow(`nanos ${nanos}`);
    }
    expect(() => fromTimestamp({ seconds: 1.5, nanos: 0 })).toThrow(/seconds 1\.5/);
    expect(() => fromTimestamp({ seconds: 1e17, nanos: 0 })).toThrow(InvalidArgumentError);
  });
});

describe('RFC 3339 with nanoseconds', () => {
  it('formats as Go RFC3339Nano does, trailing zeros trimmed', () => {
    expect(formatRFC3339Nano(NanoDate.fromNanos(1_765_020_325_915_261_957n))).toBe(
      '2025-12-06T11:25:25.915261957Z',
    );
    expect(formatRFC3339Nano(NanoDate.fromNanos(1_765_020_325_910_000_000n))).toBe('2025-12-06T11:25:25.91Z');
    expect(formatRFC3339Nano(new Date(0))).toBe('1970-01-01T00:00:00Z');
    expect(formatRFC3339Nano(NanoDate.fromNanos(-1n))).toBe('1969-12-31T23:59:59.999999999Z');
  });

  it('parses up to nine digits and zones back exactly', () => {
    expect(parseRFC3339('2025-12-06T11:25:25.915261957Z')?.toNanos()).toBe(1_765_020_325_915_261_957n);
    expect(parseRFC3339('2025-12-06T11:25:25.9Z')?.toNanos()).toBe(1_765_020_325_900_000_000n);
    expect(parseRFC3339('2025-12-06T12:25:25.000000001+01:00')?.toNanos()).toBe(1_765_020_325_000_000_001n);
    expect(parseRFC3339('1969-12-31T23:59:59.999999999Z')?.toNanos()).toBe(-1n);
    // What Date.prototype.toISOString wrote before (milliseconds) still reads.
    expect(parseRFC3339(new Date(1234).toISOString())?.toNanos()).toBe(1_234_000_000n);
  });

  it('answers undefined for what is not RFC 3339', () => {
    for (const bad of [
      '',
      'yesterday',
      '2025-12-06',
      '2025-12-06T11:25:25.1234567890Z',
      '2025-13-06T11:25:25Z',
    ]) {
      expect(parseRFC3339(bad)).toBeUndefined();
    }
  });
});

describe('the nanosecond clock', () => {
  it('is strictly increasing across successive calls', () => {
    let prev = nowNanos();
    for (let i = 0; i < 2_000; i++) {
      const ns = nowNanos();
      expect(ns > prev).toBe(true);
      prev = ns;
    }
  });

  it('follows the wall clock and has sub-millisecond digits', () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const samples = Array.from({ length: 50 }, () => preciseNow());
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    for (const s of samples) {
      // The anchor is pinned to a millisecond edge within a few microseconds.
      expect(s.toNanos()).toBeGreaterThanOrEqual(before - 100_000n);
      expect(s.toNanos()).toBeLessThanOrEqual(after + 100_000n);
    }
    expect(samples.some((s) => s.toNanos() % 1_000_000n !== 0n)).toBe(true);
  });
});
