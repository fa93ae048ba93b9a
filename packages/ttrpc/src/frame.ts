/**
 * ttrpc framing: every message is a 10-byte header followed by its payload.
 *
 *   bytes 0..3  payload length, uint32 big-endian (header excluded)
 *   bytes 4..7  stream id, uint32 big-endian (client streams are odd)
 *   byte  8     message type (request, response, data)
 *   byte  9     flags
 */

export const HEADER_LENGTH = 10;
/** Largest payload either side accepts (4 MiB), as Go's ttrpc. */
export const MESSAGE_LENGTH_MAX = 4 << 20;

export const MessageType = {
  REQUEST: 0x1,
  RESPONSE: 0x2,
  DATA: 0x3,
} as const;

/** Flags of request and data messages (streams, ttrpc 1.2+). */
export const Flag = {
  /** Non-unary; the sender will send no more data. */
  REMOTE_CLOSED: 0x1,
  /** Non-unary; the sender is still sending data (requests only). */
  REMOTE_OPEN: 0x2,
  /** The data message carries no payload (data only). */
  NO_DATA: 0x4,
} as const;

export function encodeHeader(length: number, streamId: number, type: number, flags: number): Buffer {
  // allocUnsafe serves 10 bytes from Node's shared pool: no fresh allocation per frame.
  const header = Buffer.allocUnsafe(HEADER_LENGTH);
  header.writeUInt32BE(length, 0);
  header.writeUInt32BE(streamId, 4);
  header[8] = type;
  header[9] = flags;
  return header;
}

/** What a FrameDecoder hands over. `payload` may be a view into a socket chunk. */
export interface FrameSink {
  frame(streamId: number, type: number, flags: number, payload: Buffer): void;
  /** A frame longer than MESSAGE_LENGTH_MAX was skipped without buffering it. */
  oversized(streamId: number, type: number, length: number): void;
}

/**
 * Incremental decoder for a byte stream of frames. Small frames are handed over as
 * views into the chunk they arrived in; a frame split across chunks is assembled into
 * one buffer of exactly its size; an oversized frame is skipped as it streams past.
 */
export class FrameDecoder {
  private readonly header = Buffer.allocUnsafe(HEADER_LENGTH);
  private headerFilled = 0;
  private body: Buffer | null = null;
  private bodyFilled = 0;
  private discard = 0;
  private streamId = 0;
  private type = 0;
  private flags = 0;
  private length = 0;

  constructor(private readonly sink: FrameSink) {}

  /** True when no partial frame is buffered (a clean point to end the stream). */
  get idle(): boolean {
    return this.headerFilled === 0 && this.body === null && this.discard === 0;
  }

  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.discard > 0) {
        const n = Math.min(this.discard, end - off);
        off += n;
        this.discard -= n;
        if (this.discard === 0) this.sink.oversized(this.streamId, this.type, this.length);
        continue;
      }
      if (this.body !== null) {
        const n = Math.min(this.length - this.bodyFilled, end - off);
        chunk.copy(this.body, this.bodyFilled, off, off + n);
        off += n;
        this.bodyFilled += n;
        if (this.bodyFilled === this.length) {
          const body = this.body;
          this.body = null;
          this.sink.frame(this.streamId, this.type, this.flags, body);
        }
        continue;
      }
      // Reading a header: straight from the chunk when it is whole there.
      if (this.headerFilled === 0 && end - off >= HEADER_LENGTH) {
        this.readHeader(chunk, off);
        off += HEADER_LENGTH;
      } else {
        const n = Math.min(HEADER_LENGTH - this.headerFilled, end - off);
        chunk.copy(this.header, this.headerFilled, off, off + n);
        off += n;
        this.headerFilled += n;
        if (this.headerFilled < HEADER_LENGTH) continue;
        this.headerFilled = 0;
        this.readHeader(this.header, 0);
      }
      const length = this.length;
      if (length > MESSAGE_LENGTH_MAX) {
        this.discard = length;
        continue;
      }
      if (end - off >= length) {
        const payload = chunk.subarray(off, off + length);
        off += length;
        this.sink.frame(this.streamId, this.type, this.flags, payload);
      } else {
        this.body = Buffer.allocUnsafe(length);
        this.bodyFilled = 0;
      }
    }
  }

  private readHeader(buf: Buffer, at: number): void {
    this.length = buf.readUInt32BE(at);
    this.streamId = buf.readUInt32BE(at + 4);
    this.type = buf[at + 8];
    this.flags = buf[at + 9];
  }
}
