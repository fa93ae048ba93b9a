// The time module alone: start and delete, which run once per container, must not load
// @berth/api's index (protobuf and gRPC).
import { preciseNow, type TimestampMessage, toTimestamp } from '@berth/api/time';

/** google.protobuf.Timestamp in the JS shape @berth/api uses. */
export type Timestamp = TimestampMessage;

/** Now, with nanoseconds (containerd's shim stamps exits and events with time.Now()). */
export function timestampNow(): Timestamp {
  return toTimestamp(preciseNow());
}
