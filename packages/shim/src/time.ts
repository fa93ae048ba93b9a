import { toTimestamp, type wire } from '@berth/api';

/** google.protobuf.Timestamp as the generated codecs of @berth/api shape it. */
export type Timestamp = wire.protobuf.Timestamp;

export function timestampNow(): Timestamp {
  return toTimestamp(new Date());
}
