import { decodeAny, encodeAny, InvalidArgumentError, typeNameOfUrl } from '@berth/api';
import type { Stream } from '../streaming/manager';

const DATA = 'containerd.types.transfer.Data';
const WINDOW_UPDATE = 'containerd.types.transfer.WindowUpdate';

/** Bytes the receiver grants at a time; containerd's own is 64 KiB, more keeps a socket busy. */
export const RECEIVE_WINDOW = 4 << 20;
/** Largest Data message sent (containerd's sender uses 32 KiB). */
export const SEND_CHUNK = 1 << 20;

/**
 * The bytes a client sends on a stream (containerd's ReceiveStream): window updates grant
 * the sender credit, Data messages carry the bytes, the sender closing ends them.
 */
export async function* receiveData(stream: Stream, window = RECEIVE_WINDOW): AsyncGenerator<Buffer> {
  let credit = 0;
  try {
    for (;;) {
      if (credit < window / 2) {
        await stream.send(encodeAny(WINDOW_UPDATE, { update: window }));
        credit += window;
      }
      const msg = await stream.recv();
      if (!msg) return;
      const type = typeNameOfUrl(msg.typeUrl);
      if (type !== DATA) continue; // containerd ignores other objects too
      const { data } = decodeAny<{ data: Buffer }>(msg);
      credit -= data.length;
      if (data.length > 0) yield data;
    }
  } finally {
    stream.close();
  }
}

/**
 * Sends bytes to a client on a stream (containerd's SendStream): never more than the
 * window the client granted, in Data messages of at most SEND_CHUNK bytes; closes the
 * stream at the end so the client sees EOF.
 */
export async function sendData(stream: Stream, chunks: AsyncIterable<Buffer>): Promise<void> {
  let credit = 0;
  let waiting: ((n: number) => void) | undefined;
  let ended = false;
  const credits: number[] = [];
  // Window updates arrive on their own; read them as they come.
  void (async () => {
    for (;;) {
      const msg = await stream.recv().catch(() => undefined);
      if (!msg) {
        ended = true;
        waiting?.(0);
        return;
      }
      if (typeNameOfUrl(msg.typeUrl) !== WINDOW_UPDATE) continue;
      const { update } = decodeAny<{ update: number }>(msg);
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        w(update);
      } else credits.push(update);
    }
  })();
  const more = async (): Promise<void> => {
    while (credit <= 0) {
      const c = credits.shift();
      if (c !== undefined) {
        credit += c;
        continue;
      }
      if (ended) throw new InvalidArgumentError('export stream: the receiver went away');
      credit += await new Promise<number>((r) => {
        waiting = r;
      });
    }
  };
  try {
    for await (const chunk of chunks) {
      let off = 0;
      while (off < chunk.length) {
        await more();
        const n = Math.min(credit, SEND_CHUNK, chunk.length - off);
        await stream.send(encodeAny(DATA, { data: chunk.subarray(off, off + n) }));
        credit -= n;
        off += n;
      }
    }
  } finally {
    stream.close();
  }
}
