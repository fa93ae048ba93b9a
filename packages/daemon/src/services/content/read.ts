import { type Context, OutOfRangeError, type Provider, validateDigest, type wire } from '@berth/api';

/** Read answers in chunks of this size (containerd's 1 MiB copy buffer). */
export const READ_CHUNK = 1 << 20;

/** Where Read's chunks go: a grpc-js stream or a raw HTTP/2 stream. */
export interface ReadSink {
  /** Sends one chunk; a promise when the sink wants the caller to wait (backpressure). */
  send(offset: number, data: Buffer): Promise<void> | undefined;
  /** The client went away: stop reading. */
  readonly cancelled: boolean;
}

/**
 * containerd's Read: [offset, offset+size) of a blob (size 0 or past the end: to the end),
 * a negative offset read as 0, an offset past the end OutOfRange. Chunks are 1 MiB; the
 * next is read from disk while the current one is being sent.
 */
export async function readContent(
  store: Provider,
  ctx: Context,
  req: wire.content.ReadContentRequest,
  sink: ReadSink,
): Promise<void> {
  const digest = validateDigest(req.digest);
  const ra = await store.readerAt(ctx, { digest });
  try {
    const total = ra.size;
    const offset = Math.max(0, req.offset);
    if (offset > total) throw new OutOfRangeError(`read past object length ${total} bytes`);
    let size = req.size;
    if (size <= 0 || offset + size > total) size = total - offset;
    const end = offset + size;
    let at = offset;
    let next = at < end ? ra.readAt(at, Math.min(READ_CHUNK, end - at)) : undefined;
    while (next) {
      const data = await next;
      if (data.length === 0)
        throw new OutOfRangeError(`content ${digest}: short read at offset ${at} of ${total}`);
      const chunkOffset = at;
      at += data.length;
      next = at < end && !sink.cancelled ? ra.readAt(at, Math.min(READ_CHUNK, end - at)) : undefined;
      if (sink.cancelled) break;
      const drained = sink.send(chunkOffset, data);
      if (drained) await drained;
    }
    // A read started ahead and abandoned must settle before the reader closes.
    await next?.catch(() => {});
  } finally {
    await ra.close();
  }
}
