import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';

/**
 * The server side of a SPDY/3.1 session as Kubernetes' clients speak it (moby/spdystream:
 * kubectl, crictl, critest). Why not spdy-transport's Connection: it enforces SPDY/3.1 flow
 * control on what it sends (64 KiB per stream and per session until a WINDOW_UPDATE), and
 * spdystream never sends WINDOW_UPDATE (it ignores SETTINGS and WINDOW_UPDATE frames
 * altogether), so an exec printing more than 64 KiB would stall for ever. This framer, like
 * spdystream and the kubelet, does no flow control; it speaks the frames those clients use:
 * SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, HEADERS, PING, GOAWAY (SETTINGS and WINDOW_UPDATE
 * are read and ignored).
 */

const VERSION = 3;
// The SPDY/3 header-compression dictionary (a constant of the spec), from the maintained package;
// loaded with the first session: spdy-transport and its dependencies hold ~1.5 MiB of heap.
let dictionary: Buffer | undefined;
function spdyDictionary(): Buffer {
  dictionary ??= (require('spdy-transport') as { protocol: { spdy: { dictionary: Record<number, Buffer> } } })
    .protocol.spdy.dictionary[3];
  return dictionary;
}

export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;
const FLAG_FIN = 0x01;
/** RST_STREAM status codes used here. */
export const RstStatus = { PROTOCOL_ERROR: 1, INVALID_STREAM: 2, REFUSED_STREAM: 3, CANCEL: 5 } as const;
const MAX_FRAME = 0xffffff;
/** Bigger DATA frames are cut (spdystream reads up to 16 MiB; small frames keep latency low). */
const DATA_CHUNK = 32 * 1024;

export type Headers = Record<string, string[]>;

/** The SPDY/3 name/value block: count, then length-prefixed names and NUL-joined values. */
export function encodeHeaderBlock(headers: Headers): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const entries = Object.entries(headers);
  parts.push(u32(entries.length));
  for (const [name, values] of entries) {
    const n = Buffer.from(name.toLowerCase());
    const v = Buffer.from(values.join('\0'));
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(block: Buffer): Headers {
  const out: Headers = {};
  let at = 0;
  const need = (n: number) => {
    if (at + n > block.length) throw new Error('spdy: truncated header block');
  };
  need(4);
  const count = block.readUInt32BE(at);
  at += 4;
  for (let i = 0; i < count; i++) {
    need(4);
    const nl = block.readUInt32BE(at);
    at += 4;
    need(nl);
    const name = block.subarray(at, at + nl).toString();
    at += nl;
    need(4);
    const vl = block.readUInt32BE(at);
    at += 4;
    need(vl);
    const value = block.subarray(at, at + vl).toString();
    at += vl;
    out[name.toLowerCase()] = [...(out[name.toLowerCase()] ?? []), ...value.split('\0')];
  }
  return out;
}

/** Runs a chunk through a zlib stream that lives as long as the session (SPDY's header contexts). */
function zflush(z: zlib.Inflate | zlib.Deflate, input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (c: Buffer) => chunks.push(c);
    const onError = (e: Error) => {
      z.off('data', onData);
      reject(e);
    };
    z.on('data', onData);
    z.once('error', onError);
    z.write(input);
    z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      z.off('data', onData);
      z.off('error', onError);
      resolve(Buffer.concat(chunks));
    });
  });
}

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([h, payload]);
}

function dataFrame(streamId: number, flags: number, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId & 0x7fffffff, 0);
  h.writeUInt32BE(((flags & 0xff) << 24) | data.length, 4);
  return Buffer.concat([h, data]);
}

/**
 * One stream of a session: readable is what the client sends, writable goes to the client;
 * end() half-closes (FIN), as spdystream's Close does.
 */
export class SpdyStream extends Duplex {
  private remoteClosed = false;
  private localClosed = false;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    readonly headers: Headers,
  ) {
    super({ allowHalfOpen: true });
  }

  /** The first value of a header (names are lower case on the wire). */
  header(name: string): string {
    return this.headers[name.toLowerCase()]?.[0] ?? '';
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.localClosed) {
      cb();
      return;
    }
    this.session.sendData(this.id, chunk, false).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.localClosed) {
      cb();
      return;
    }
    this.localClosed = true;
    this.session.sendData(this.id, Buffer.alloc(0), true).then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.localClosed || !this.remoteClosed) {
      this.localClosed = true;
      this.session.reset(this.id, RstStatus.CANCEL);
    }
    this.session.forget(this.id);
    cb(err);
  }

  /** @internal data from the client */
  onData(data: Buffer, fin: boolean): void {
    if (this.remoteClosed) return;
    if (data.length > 0) this.push(data);
    if (fin) {
      this.remoteClosed = true;
      this.push(null);
    }
  }

  /** @internal the client reset the stream, or the session ended. */
  onReset(): void {
    this.localClosed = true;
    if (!this.remoteClosed) {
      this.remoteClosed = true;
      this.push(null);
    }
    this.destroy();
  }
}

/**
 * A SPDY/3.1 session over a socket the HTTP server upgraded; 'stream' is emitted for each
 * stream the client opens (after it was answered with SYN_REPLY), 'close' once the socket closed.
 */
export class SpdySession extends EventEmitter {
  private readonly inflate = zlib.createInflate({ dictionary: spdyDictionary() });
  private readonly deflate = zlib.createDeflate({ dictionary: spdyDictionary() });
  private readonly streams = new Map<number, SpdyStream>();
  private buffered: Buffer = Buffer.alloc(0);
  /** Frames are handled, and sent, one after the other: header blocks share one zlib context each way. */
  private inbound: Promise<void> = Promise.resolve();
  private outbound: Promise<void> = Promise.resolve();
  private closed = false;
  private ended = false;
  private lastStreamId = 0;

  constructor(private readonly socket: Duplex) {
    super();
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('error', () => this.shutdown());
    socket.on('close', () => this.shutdown());
    socket.on('end', () => this.shutdown());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private onBytes(chunk: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (this.buffered.length >= 8) {
      const len = this.buffered.readUInt32BE(4) & MAX_FRAME;
      if (this.buffered.length < 8 + len) break;
      const frame = this.buffered.subarray(0, 8 + len);
      this.buffered = this.buffered.subarray(8 + len);
      this.inbound = this.inbound.then(() => this.onFrame(frame)).catch((e) => this.fail(e as Error));
    }
  }

  private fail(e: Error): void {
    this.emit('protocolError', e);
    this.close();
  }

  private async onFrame(frame: Buffer): Promise<void> {
    if (this.closed) return;
    const flags = frame[4];
    const payload = frame.subarray(8);
    if ((frame[0] & 0x80) === 0) {
      const id = frame.readUInt32BE(0) & 0x7fffffff;
      const s = this.streams.get(id);
      if (s) s.onData(Buffer.from(payload), (flags & FLAG_FIN) !== 0);
      else this.reset(id, RstStatus.INVALID_STREAM);
      return;
    }
    const version = frame.readUInt16BE(0) & 0x7fff;
    if (version !== VERSION) throw new Error(`spdy: unsupported version ${version}`);
    const type = frame.readUInt16BE(2);
    switch (type) {
      case FrameType.SYN_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeHeaderBlock(await zflush(this.inflate, payload.subarray(10)));
        if (id <= this.lastStreamId || id % 2 === 0) {
          this.reset(id, RstStatus.PROTOCOL_ERROR);
          return;
        }
        this.lastStreamId = id;
        const s = new SpdyStream(this, id, headers);
        this.streams.set(id, s);
        // Answered before anything is written on it, as the kubelet's SendReply.
        await this.sendControl(FrameType.SYN_REPLY, 0, id, {});
        if (flags & FLAG_FIN) s.onData(Buffer.alloc(0), true);
        this.emit('stream', s);
        return;
      }
      case FrameType.HEADERS:
      case FrameType.SYN_REPLY:
        // Keeps the shared decompression context in step; nothing here needs these headers.
        await zflush(this.inflate, payload.subarray(4));
        return;
      case FrameType.RST_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        this.streams.get(id)?.onReset();
        return;
      }
      case FrameType.PING:
        // Pings the client started (odd ids) are echoed.
        if (payload.readUInt32BE(0) % 2 === 1)
          this.write(controlFrame(FrameType.PING, 0, Buffer.from(payload)));
        return;
      case FrameType.GOAWAY:
        this.close();
        return;
      default:
        // SETTINGS, WINDOW_UPDATE and others: spdystream does no flow control, nor does this side.
        return;
    }
  }

  /** Queues a frame (or the making of one: header blocks are compressed in sending order). */
  private write(frame: Buffer | (() => Promise<Buffer>)): Promise<void> {
    const p = this.outbound.then(async () => {
      const buf = typeof frame === 'function' ? await frame() : frame;
      await new Promise<void>((resolve) => {
        if (this.closed || this.socket.destroyed) {
          resolve();
          return;
        }
        if (this.socket.write(buf)) resolve();
        else {
          const done = () => {
            this.socket.off('drain', done);
            this.socket.off('close', done);
            resolve();
          };
          this.socket.on('drain', done);
          this.socket.on('close', done);
        }
      });
    });
    this.outbound = p.catch(() => {});
    return p;
  }

  private sendControl(type: number, flags: number, id: number, headers: Headers): Promise<void> {
    return this.write(async () => {
      const block = await zflush(this.deflate, encodeHeaderBlock(headers));
      const idb = Buffer.alloc(4);
      idb.writeUInt32BE(id);
      return controlFrame(type, flags, Buffer.concat([idb, block]));
    });
  }

  /** @internal */
  async sendData(id: number, data: Buffer, fin: boolean): Promise<void> {
    for (let at = 0; at < data.length; at += DATA_CHUNK) {
      const last = at + DATA_CHUNK >= data.length;
      await this.write(dataFrame(id, fin && last ? FLAG_FIN : 0, data.subarray(at, at + DATA_CHUNK)));
    }
    if (data.length === 0) await this.write(dataFrame(id, fin ? FLAG_FIN : 0, data));
  }

  /** @internal */
  reset(id: number, status: number): void {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(id & 0x7fffffff, 0);
    b.writeUInt32BE(status, 4);
    void this.write(controlFrame(FrameType.RST_STREAM, 0, b));
  }

  /** @internal */
  forget(id: number): void {
    this.streams.delete(id);
  }

  /** Sends GOAWAY once everything queued is written, then closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    const b = Buffer.alloc(8);
    b.writeUInt32BE(this.lastStreamId, 0);
    await this.write(controlFrame(FrameType.GOAWAY, 0, b));
    this.closed = true;
    this.socket.end();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.ended) return;
    this.ended = true;
    this.closed = true;
    for (const s of [...this.streams.values()]) s.onReset();
    this.streams.clear();
    this.inflate.close();
    this.deflate.close();
    if (!this.socket.destroyed) this.socket.destroy();
    this.emit('close');
  }
}
