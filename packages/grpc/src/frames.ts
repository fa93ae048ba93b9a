import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import hpack from 'hpack.js';
import {
  ACK,
  CONTINUATION,
  END_HEADERS,
  END_STREAM,
  FRAME_HEADER,
  FRAME_SIZE_ERROR,
  GOAWAY,
  HEADERS,
  PADDED,
  PREFACE,
  PRIORITY,
  PROTOCOL_ERROR,
  RST_STREAM,
  SETTINGS,
} from './http2-frames';

/**
 * A frame layer below Node's HTTP/2 session. gRPC-Go dialing a bare unix path, grpc-java
 * and Python's grpc send the socket path as `:authority`; nghttp2 refuses a `/` there and
 * resets the stream before any JS sees it, and Node has no switch for that check.
 * containerd accepts any authority, so every client→server header block is decoded here
 * and re-encoded with a harmless authority before nghttp2 reads it; every other frame, and
 * every server→client byte, passes untouched.
 */

/** A compressed header block larger than this is an attack, not a gRPC call. */
const MAX_HEADER_BLOCK = 1 << 20;
/** HPACK's default dynamic table size, which nghttp2 advertises (SETTINGS_HEADER_TABLE_SIZE). */
const HPACK_TABLE_SIZE = 4096;

/** The authority given to nghttp2 in place of one it would refuse. */
export const REPLACEMENT_AUTHORITY = 'localhost';

/** RFC 3986 authority characters, less `%`: a percent-encoded path is a path, not a host. */
const AUTHORITY_OK = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]]*$/;

/** Whether nghttp2 would take this `:authority` as it is. */
export const acceptableAuthority = (value: string): boolean => AUTHORITY_OK.test(value);

/** A client that broke HTTP/2 framing: the connection ends with GOAWAY carrying code. */
export class ConnectionError extends Error {
  constructor(
    message: string,
    readonly code = PROTOCOL_ERROR,
  ) {
    super(message);
  }
}

/** HPACK integer with an n-bit prefix (RFC 7541 5.1), prefix bits of the first byte in `first`. */
function pushInt(out: number[], value: number, bits: number, first: number): void {
  const max = (1 << bits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

/**
 * A header block of literals without indexing and without Huffman coding: nghttp2's
 * decoder table stays empty, so nothing the client indexed can reach it unfiltered.
 */
export function encodeLiterals(headers: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    const head: number[] = [];
    pushInt(head, 0, 4, 0x00);
    pushInt(head, Buffer.byteLength(name, 'latin1'), 7, 0x00);
    const nameBytes = Buffer.from(name, 'latin1');
    const tail: number[] = [];
    pushInt(tail, Buffer.byteLength(value, 'latin1'), 7, 0x00);
    parts.push(Buffer.from(head), nameBytes, Buffer.from(tail), Buffer.from(value, 'latin1'));
  }
  return Buffer.concat(parts);
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return h;
}

/** GOAWAY with the last stream id the client opened and an error code. */
export function goawayFrame(lastStreamId: number, code: number): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER + 8);
  frameHeader(8, GOAWAY, 0, 0).copy(f);
  f.writeUInt32BE(lastStreamId & 0x7fffffff, 9);
  f.writeUInt32BE(code, 13);
  return f;
}

export interface FilterOptions {
  /** SETTINGS_MAX_FRAME_SIZE the server advertises (nghttp2 refuses larger frames). */
  maxFrameSize?: number;
  /**
   * When given, the client's RST_STREAM frames are taken out of what nghttp2 reads and
   * handed here instead (the server then closes the stream itself). nghttp2 ends a
   * connection with GOAWAY(INTERNAL_ERROR) past 1000 resets of open streams plus 33 a
   * second (its rapid-reset guard, not configurable in Node 20), and containerd's content
   * reader cancels each Read call it has read enough of: thousands per blob. containerd
   * has no such limit.
   */
  onReset?: (streamId: number, code: number) => void;
  /**
   * The server wrote a SETTINGS frame of its own before nghttp2 had the connection
   * (handoff.ts) and the client's ACK of it has not been read yet: the first SETTINGS ACK
   * is dropped (nghttp2 would take it for an ACK of its SETTINGS, then see the real one
   * as a PROTOCOL_ERROR).
   */
  dropSettingsAck?: boolean;
}

/**
 * Parses client→server bytes (preface, then frames) and gives out the bytes nghttp2
 * should read: the input itself, sliced, except header blocks, which are re-encoded.
 * Throws ConnectionError on malformed framing.
 */
export class ClientFrameFilter {
  private prefaceSeen = 0;
  private readonly head = Buffer.allocUnsafe(FRAME_HEADER);
  private headFill = 0;
  /** Bytes of the current pass-through frame still to come. */
  private passRemaining = 0;
  /** The HEADERS/CONTINUATION frame whose payload is being collected. */
  private frame:
    | { type: number; flags: number; streamId: number; remaining: number; parts: Buffer[] }
    | undefined;
  /** The header block being assembled (HEADERS then CONTINUATIONs). */
  private block: { streamId: number; endStream: boolean; parts: Buffer[]; size: number } | undefined;
  private readonly decoder = hpack.decompressor.create({ table: { size: HPACK_TABLE_SIZE } });
  private decodeError: Error | undefined;
  private readonly maxFrameSize: number;
  private readonly onReset: ((streamId: number, code: number) => void) | undefined;
  private dropSettingsAck: boolean;
  /** The highest stream id the client opened, for GOAWAY. */
  lastStreamId = 0;
  /** The first `:authority` replaced on this connection, for logs. */
  replacedAuthority: string | undefined;

  constructor(opts: FilterOptions = {}) {
    this.maxFrameSize = opts.maxFrameSize ?? 16384;
    this.onReset = opts.onReset;
    this.dropSettingsAck = opts.dropSettingsAck ?? false;
    this.decoder.on('error', (err: Error) => {
      this.decodeError ??= err;
    });
  }

  /** Feeds one chunk read from the socket; out receives what to hand to nghttp2, in order. */
  push(chunk: Buffer, out: (b: Buffer) => void): void {
    const len = chunk.length;
    let i = 0;
    /** Start of the run of chunk bytes that passes through unchanged. */
    let rs = 0;
    const flush = (upTo: number) => {
      if (upTo > rs) out(chunk.subarray(rs, upTo));
      rs = upTo;
    };
    while (i < len) {
      if (this.prefaceSeen < PREFACE.length) {
        const n = Math.min(PREFACE.length - this.prefaceSeen, len - i);
        if (chunk.compare(PREFACE, this.prefaceSeen, this.prefaceSeen + n, i, i + n) !== 0) {
          throw new ConnectionError('invalid HTTP/2 connection preface');
        }
        this.prefaceSeen += n;
        i += n;
        continue;
      }
      if (this.passRemaining > 0) {
        const n = Math.min(this.passRemaining, len - i);
        this.passRemaining -= n;
        i += n;
        continue;
      }
      const f = this.frame;
      if (f) {
        const n = Math.min(f.remaining, len - i);
        if (n > 0) f.parts.push(chunk.subarray(i, i + n));
        f.remaining -= n;
        i += n;
        rs = i;
        if (f.remaining === 0) {
          this.frame = undefined;
          if (f.type === RST_STREAM) {
            const p = f.parts.length === 1 ? f.parts[0]! : Buffer.concat(f.parts);
            this.onReset?.(f.streamId, p.readUInt32BE(0));
          } else this.headerFrame(f.type, f.flags, f.streamId, f.parts, out);
        }
        continue;
      }
      // A frame header, possibly split across chunks.
      const start = i;
      const carried = this.headFill;
      const n = Math.min(FRAME_HEADER - this.headFill, len - i);
      chunk.copy(this.head, this.headFill, i, i + n);
      this.headFill += n;
      i += n;
      if (this.headFill < FRAME_HEADER) {
        flush(start);
        rs = len;
        break;
      }
      this.headFill = 0;
      const h = this.head;
      const length = h.readUIntBE(0, 3);
      const type = h[3]!;
      const flags = h[4]!;
      const streamId = h.readUInt32BE(5) & 0x7fffffff;
      if (this.block && type !== CONTINUATION) {
        throw new ConnectionError(`frame type ${type} inside a header block (CONTINUATION expected)`);
      }
      if (type === HEADERS || type === CONTINUATION) {
        if (length > this.maxFrameSize) {
          throw new ConnectionError(`frame of ${length} bytes over ${this.maxFrameSize}`, FRAME_SIZE_ERROR);
        }
        if (streamId === 0) throw new ConnectionError(`frame type ${type} on stream 0`);
        if (type === CONTINUATION && this.block?.streamId !== streamId) {
          throw new ConnectionError(`CONTINUATION on stream ${streamId} without a header block`);
        }
        if (type === HEADERS && streamId > this.lastStreamId) this.lastStreamId = streamId;
        flush(start);
        rs = i;
        if (length === 0) this.headerFrame(type, flags, streamId, [], out);
        else this.frame = { type, flags, streamId, remaining: length, parts: [] };
        continue;
      }
      if (type === RST_STREAM && this.onReset && length === 4 && streamId !== 0) {
        flush(start);
        rs = i;
        this.frame = { type, flags, streamId, remaining: length, parts: [] };
        continue;
      }
      if (type === SETTINGS && flags & ACK && length === 0 && this.dropSettingsAck) {
        this.dropSettingsAck = false;
        flush(start);
        rs = i;
        continue;
      }
      if (carried > 0) out(Buffer.from(h.subarray(0, carried)));
      this.passRemaining = length;
    }
    flush(len);
  }

  private headerFrame(
    type: number,
    flags: number,
    streamId: number,
    parts: Buffer[],
    out: (b: Buffer) => void,
  ): void {
    let payload = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (type === HEADERS) {
      let start = 0;
      let end = payload.length;
      if (flags & PADDED) {
        if (payload.length < 1) throw new ConnectionError('PADDED HEADERS without a pad length');
        end -= payload[0]!;
        start = 1;
      }
      if (flags & PRIORITY) start += 5;
      if (end < start) throw new ConnectionError('HEADERS padding longer than the frame');
      payload = payload.subarray(start, end);
      this.block = { streamId, endStream: (flags & END_STREAM) !== 0, parts: [], size: 0 };
    }
    const block = this.block!;
    block.parts.push(payload);
    block.size += payload.length;
    if (block.size > MAX_HEADER_BLOCK)
      throw new ConnectionError(`header block over ${MAX_HEADER_BLOCK} bytes`);
    if ((flags & END_HEADERS) === 0) return;
    this.block = undefined;
    const headers = this.decode(block.parts.length === 1 ? block.parts[0]! : Buffer.concat(block.parts));
    this.emitBlock(block.streamId, block.endStream, encodeLiterals(headers), out);
  }

  private decode(block: Buffer): [string, string][] {
    const d = this.decoder;
    if (block.length > 0) {
      d.write(block);
      d.execute();
    }
    const headers: [string, string][] = [];
    for (let h = d.read(); h !== null; h = d.read()) {
      let value: string = h.value;
      if (h.name === ':authority' && !acceptableAuthority(value)) {
        this.replacedAuthority ??= value;
        value = REPLACEMENT_AUTHORITY;
      }
      headers.push([h.name, value]);
    }
    if (this.decodeError) throw new ConnectionError(`HPACK: ${this.decodeError.message}`, 0x9);
    return headers;
  }

  private emitBlock(streamId: number, endStream: boolean, block: Buffer, out: (b: Buffer) => void): void {
    const max = this.maxFrameSize;
    let off = 0;
    let type = HEADERS;
    do {
      const n = Math.min(max, block.length - off);
      const last = off + n === block.length;
      let flags = last ? END_HEADERS : 0;
      if (type === HEADERS && endStream) flags |= END_STREAM;
      out(frameHeader(n, type, flags, streamId));
      if (n > 0) out(block.subarray(off, off + n));
      off += n;
      type = CONTINUATION;
    } while (off < block.length);
  }
}

const NO_ERROR = 0;

/**
 * Follows the server→client frames (headers only, payloads skipped) to see a GOAWAY
 * nghttp2 sends on its own, and its error code.
 */
class GoawayWatch {
  private readonly head = Buffer.allocUnsafe(FRAME_HEADER + 8);
  private fill = 0;
  /** Bytes of the current frame's payload still to skip. */
  private skip = 0;
  /** The header (+ first 8 payload bytes for GOAWAY) being read is this long. */
  private want = FRAME_HEADER;

  /** The error code of a GOAWAY that ends in chunk, if one does. */
  push(chunk: Buffer): number | undefined {
    let i = 0;
    let code: number | undefined;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.want - this.fill, chunk.length - i);
      chunk.copy(this.head, this.fill, i, i + n);
      this.fill += n;
      i += n;
      if (this.fill < this.want) break;
      const length = this.head.readUIntBE(0, 3);
      const type = this.head[3];
      if (type === GOAWAY && this.want === FRAME_HEADER && length >= 8) {
        this.want = FRAME_HEADER + 8;
        continue;
      }
      if (this.want > FRAME_HEADER) code = this.head.readUInt32BE(FRAME_HEADER + 4);
      this.skip = length - (this.want - FRAME_HEADER);
      this.fill = 0;
      this.want = FRAME_HEADER;
    }
    return code;
  }
}

/** How long a connection that broke HTTP/2 gets to read its GOAWAY before the socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

/**
 * The socket as nghttp2 should see it: client→server bytes through ClientFrameFilter,
 * server→client bytes written as they are. A framing error sends GOAWAY and closes the
 * socket (destroyed after CLOSE_GRACE_MS at the latest).
 */
export class FilteredSocket extends Duplex {
  readonly frames: ClientFrameFilter;
  private readonly outbound = new GoawayWatch();
  private closing = false;
  private readonly onConnectionError: ((err: ConnectionError) => void) | undefined;

  constructor(
    readonly socket: Socket,
    opts: FilterOptions & { onConnectionError?: (err: ConnectionError) => void } = {},
  ) {
    super({ allowHalfOpen: false });
    this.frames = new ClientFrameFilter(opts);
    this.onConnectionError = opts.onConnectionError;
    const push = (b: Buffer) => {
      if (!this.push(b)) socket.pause();
    };
    // One push per chunk read: each push is a separate trip into nghttp2.
    const pieces: Buffer[] = [];
    const collect = (b: Buffer) => {
      pieces.push(b);
    };
    socket.on('data', (chunk: Buffer) => {
      if (this.closing) return;
      try {
        this.frames.push(chunk, collect);
        if (pieces.length === 1) push(pieces[0]!);
        else if (pieces.length > 1) push(Buffer.concat(pieces));
        pieces.length = 0;
      } catch (err) {
        pieces.length = 0;
        const e = err instanceof ConnectionError ? err : new ConnectionError(String(err));
        this.onConnectionError?.(e);
        this.fail(e.code);
      }
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  /** GOAWAY with code, then the socket closes; nghttp2's session is destroyed at once. */
  fail(code: number): void {
    if (this.closing) return;
    this.closing = true;
    const s = this.socket;
    if (!s.destroyed) {
      s.end(goawayFrame(this.frames.lastStreamId, code));
      setTimeout(() => s.destroy(), CLOSE_GRACE_MS).unref();
    }
    this.destroy();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeOut([chunk], cb);
  }

  /**
   * nghttp2 hands over frame headers and payloads as separate buffers: one writev for all
   * of them, not a syscall each.
   */
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.writeOut(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  private writeOut(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    const s = this.socket;
    if (this.closing || s.destroyed) {
      cb();
      return;
    }
    let goaway: number | undefined;
    for (const c of chunks) goaway = this.outbound.push(c) ?? goaway;
    if (goaway !== undefined && goaway !== NO_ERROR) {
      // nghttp2 found the client in error and sent GOAWAY, but Node keeps the connection
      // open: end it once the GOAWAY is out, destroy it if the client does not close.
      this.closing = true;
      this.onConnectionError?.(
        new ConnectionError(`HTTP/2 session sent GOAWAY with error code ${goaway}`, goaway),
      );
      for (const c of chunks) s.write(c);
      s.end();
      setTimeout(() => s.destroy(), CLOSE_GRACE_MS).unref();
      cb();
      this.destroy();
      return;
    }
    let ok = true;
    if (chunks.length === 1) ok = s.write(chunks[0]!);
    else {
      s.cork();
      for (const c of chunks) ok = s.write(c);
      s.uncork();
    }
    if (ok) cb();
    else s.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.closing) this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.closing) this.socket.destroy();
    cb(err);
  }
}
