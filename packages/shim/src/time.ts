/** google.protobuf.Timestamp in the JS shape @berth/api uses. */
export interface Timestamp {
  seconds: number;
  nanos: number;
}

export function timestampNow(): Timestamp {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}
