import { CONVERSION_OPTIONS, InvalidArgumentError, protoType } from '@berth/api';
import type { Call, RawHandler } from '@berth/grpc';

/**
 * Content.Read is served on the raw call (request bytes in, encoded message parts out):
 * containerd's clients read a blob with one Read call per 32 KiB, so a stream object and
 * per-message serialisation would dominate the daemon's side.
 */
export type { RawHandler };
export type RawCall = Call;

/**
 * A decoder for one message type with the loader's conversions (camelCase, int64 as
 * number); the type is looked up once.
 */
export function messageDecoder<T>(typeName: string): (bytes: Buffer) => T {
  let type: ReturnType<typeof protoType> | undefined;
  return (bytes) => {
    type ??= protoType(typeName);
    try {
      return type.toObject(type.decode(bytes), CONVERSION_OPTIONS) as T;
    } catch (err) {
      throw new InvalidArgumentError(`decode ${typeName}: ${(err as Error).message}`, { cause: err });
    }
  };
}
