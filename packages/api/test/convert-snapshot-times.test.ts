import { NanoDate, snapshotInfoFromWire, snapshotInfoToWire, toNanos } from '../src';

describe('snapshot Info messages', () => {
  it('carry created and updated times to the nanosecond, both ways', () => {
    const createdAt = NanoDate.fromNanos(1_765_020_325_915_261_957n);
    const updatedAt = NanoDate.fromNanos(1_765_020_325_915_261_958n);
    const msg = snapshotInfoToWire({
      kind: 'committed',
      name: 'n',
      parent: '',
      labels: {},
      createdAt,
      updatedAt,
    });
    expect(msg.createdAt).toEqual({ seconds: 1_765_020_325, nanos: 915_261_957 });
    expect(msg.updatedAt).toEqual({ seconds: 1_765_020_325, nanos: 915_261_958 });
    const back = snapshotInfoFromWire(msg);
    expect([toNanos(back.createdAt), toNanos(back.updatedAt)]).toEqual([
      toNanos(createdAt),
      toNanos(updatedAt),
    ]);
  });

  it('reads unset times as the epoch and rejects nanos out of range', () => {
    expect(snapshotInfoFromWire({ name: 'n', createdAt: undefined }).createdAt.getTime()).toBe(0);
    expect(() =>
      snapshotInfoFromWire({ name: 'n', createdAt: { seconds: 1, nanos: 1_000_000_000 } }),
    ).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
