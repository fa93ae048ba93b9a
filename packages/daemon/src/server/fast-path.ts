import type { Call, RawHandler } from '@berth/grpc';

/**
 * Content.Read is served on the raw call (request bytes in, encoded message parts out):
 * containerd's clients read a blob with one Read call per 32 KiB, so a stream object and
 * per-message serialisation would dominate the daemon's side.
 */
export type { RawHandler };
export type RawCall = Call;
