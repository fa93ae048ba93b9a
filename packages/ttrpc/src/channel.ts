import type { Socket } from 'node:net';
import { encodeHeader, HEADER_LENGTH } from './frame';

/**
 * Writes one frame: header and body go out in a single writev. Returns false when the
 * socket asks the writer to wait for 'drain' (and when it is no longer writable).
 */
export function writeFrame(
  socket: Socket,
  streamId: number,
  type: number,
  flags: number,
  body: Buffer,
): boolean {
  if (socket.destroyed || !socket.writable) return false;
  const header = encodeHeader(body.length, streamId, type, flags);
  if (body.length === 0) return socket.write(header);
  socket.cork();
  socket.write(header);
  const ok = socket.write(body);
  socket.uncork();
  return ok;
}

/**
 * Writes a frame built with its first HEADER_LENGTH bytes blank (envelope.ts): the
 * header goes into those bytes, and the whole frame out in one write.
 */
export function sendFrame(
  socket: Socket,
  frame: Buffer,
  streamId: number,
  type: number,
  flags: number,
): boolean {
  if (socket.destroyed || !socket.writable) return false;
  frame.writeUInt32BE(frame.length - HEADER_LENGTH, 0);
  frame.writeUInt32BE(streamId, 4);
  frame[8] = type;
  frame[9] = flags;
  return socket.write(frame);
}

/** Resolves when a socket that returned false from write() can take more, or is gone. */
export function drained(socket: Socket): Promise<void> {
  if (socket.destroyed || !socket.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
