import hpack from 'hpack.js';
import { acceptableAuthority } from './frames';
import {
  ACK,
  CONTINUATION,
  END_HEADERS,
  FRAME_HEADER,
  HEADERS,
  PADDED,
  PREFACE,
  PRIORITY,
  PRIORITY_FRAME,
  SETTINGS,
  WINDOW_UPDATE,
} from './http2-frames';

/**
 * The start of a connection, read before nghttp2 gets it, to choose its path: the
 * native socket straight to nghttp2 (no JS between the socket and the session) when the
 * client's first request carries an `:authority` nghttp2 takes, the frame layer
 * (frames.ts) otherwise.
 *
 * gRPC clients send no request before the server's SETTINGS, and nghttp2 only sends
 * those once it has the socket; so the server writes a SETTINGS frame with the content
 * nghttp2 will send (`serverSettingsFrame`) at accept. The client's ACK of that frame is
 * taken out of the bytes nghttp2 reads (nghttp2 would see a second ACK for its own
 * SETTINGS as a PROTOCOL_ERROR); the client ACKs nghttp2's identical SETTINGS later, and
 * applying the same settings twice changes nothing.
 */

/** More than this read before a decision: not a gRPC client's first request; the frame layer judges. */
const MAX_SNIFF_BYTES = 1 << 20;

/** A SETTINGS frame carrying payload (what `http2.getPackedSettings` gives). */
export function serverSettingsFrame(payload: Buffer): Buffer {
  const f = Buffer.alloc(FRAME_HEADER + payload.length);
  f.writeUIntBE(payload.length, 0, 3);
  f[3] = SETTINGS;
  payload.copy(f, FRAME_HEADER);
  return f;
}

export type Verdict =
  /** Give nghttp2 the native socket, with `bytes` put back in front of what is still to come. */
  | { path: 'native'; bytes: Buffer }
  /**
   * Serve the connection through the frame layer, `bytes` first; `ackPending`: the
   * client's ACK of the injected SETTINGS is still to come and the layer must drop it.
   */
  | { path: 'filter'; bytes: Buffer; ackPending: boolean; authority?: string };

/**
 * Reads the client's preface and frames up to its first header block and its ACK of the
 * injected SETTINGS. Anything unexpected before then (GOAWAY, PING, DATA, garbage) goes
 * to the frame layer, which handles it as for any connection.
 */
export class ConnectionSniffer {
  private buf: Buffer = Buffer.alloc(0);
  /** Parsed up to here in buf. */
  private off = 0;
  /** Where the client's ACK of the injected SETTINGS sits in buf (taken out of what nghttp2 reads). */
  private ackAt = -1;
  /** The first header block, while its CONTINUATIONs come. */
  private block: Buffer[] | undefined;
  /** The first request's `:authority` ('' without one) once its block is read. */
  authority: string | undefined;
  private readonly decoder = hpack.decompressor.create({ table: { size: 4096 } });
  private decodeError = false;

  constructor() {
    this.decoder.on('error', () => {
      this.decodeError = true;
    });
  }

  /** Feeds bytes read; a verdict once there is one. */
  push(chunk: Buffer): Verdict | undefined {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.off === 0) {
      const n = Math.min(PREFACE.length, this.buf.length);
      if (this.buf.compare(PREFACE, 0, n, 0, n) !== 0) return this.filter();
      if (this.buf.length < PREFACE.length) return undefined;
      this.off = PREFACE.length;
    }
    while (this.off + FRAME_HEADER <= this.buf.length) {
      const b = this.buf;
      const at = this.off;
      const length = b.readUIntBE(at, 3);
      const type = b[at + 3]!;
      const flags = b[at + 4]!;
      const streamId = b.readUInt32BE(at + 5) & 0x7fffffff;
      if (at + FRAME_HEADER + length > b.length) break;
      this.off = at + FRAME_HEADER + length;
      const payload = b.subarray(at + FRAME_HEADER, this.off);
      if (type === SETTINGS && flags & ACK) {
        if (this.ackAt >= 0 || length !== 0 || streamId !== 0 || this.block) return this.filter();
        this.ackAt = at;
      } else if (this.authority !== undefined) {
        // After the first request, frames pass as they are; only the ACK is still awaited.
      } else if (this.block) {
        if (type !== CONTINUATION || streamId !== this.blockStream) return this.filter();
        this.block.push(payload);
        if (flags & END_HEADERS && !this.endBlock()) return this.filter();
      } else if (type === HEADERS) {
        if (streamId === 0) return this.filter();
        let start = 0;
        let end = payload.length;
        if (flags & PADDED) {
          if (payload.length < 1) return this.filter();
          end -= payload[0]!;
          start = 1;
        }
        if (flags & PRIORITY) start += 5;
        if (end < start) return this.filter();
        this.block = [payload.subarray(start, end)];
        this.blockStream = streamId;
        if (flags & END_HEADERS && !this.endBlock()) return this.filter();
      } else if (type !== SETTINGS && type !== WINDOW_UPDATE && type !== PRIORITY_FRAME) {
        return this.filter();
      }
      if (this.authority !== undefined && !acceptableAuthority(this.authority)) return this.filter();
      if (this.authority !== undefined && this.ackAt >= 0) return { path: 'native', bytes: this.rest() };
    }
    if (this.buf.length > MAX_SNIFF_BYTES) return this.filter();
    return undefined;
  }

  private blockStream = 0;

  /** Decodes the first header block; false if it cannot be read. */
  private endBlock(): boolean {
    const parts = this.block!;
    this.block = undefined;
    const d = this.decoder;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (block.length > 0) {
      d.write(block);
      d.execute();
    }
    let authority = '';
    for (let h = d.read(); h !== null; h = d.read()) {
      if (h.name === ':authority') authority = h.value;
    }
    if (this.decodeError) return false;
    this.authority = authority;
    return true;
  }

  /** The frame layer for the whole connection (the deadline passed, or something unexpected came). */
  filter(): Verdict {
    return {
      path: 'filter',
      bytes: this.rest(),
      ackPending: this.ackAt < 0,
      ...(this.authority !== undefined ? { authority: this.authority } : {}),
    };
  }

  /** What was read, less the stripped ACK. */
  private rest(): Buffer {
    const b = this.buf;
    if (this.ackAt < 0) return b;
    return Buffer.concat([b.subarray(0, this.ackAt), b.subarray(this.ackAt + FRAME_HEADER)]);
  }
}
