import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { gunzipSync, inflateSync } from 'node:zlib';
import {
  CanceledError,
  type Context,
  DeadlineExceededError,
  firstMetadataValue,
  GrpcCode,
  type GrpcStatus,
  isBerthError,
  LEASE_HEADER,
  NAMESPACE_HEADER,
  toGrpcStatus,
} from '@berth/api';

/** A status decided by the transport itself (grpc-go's words), not mapped from an error. */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(details);
  }
}

/** What the server logs through: berthd's Logger fits. */
export interface Log {
  with(fields: Record<string, string | number | boolean | undefined>): Log;
  enabled(level: 'trace'): boolean;
  trace(msg: string): void;
  debug(msg: string): void;
  error(msg: string): void;
}

export interface HandlerOptions {
  /** `<Service>/<Method>` in logs and traces; the method's path without its package otherwise. */
  method?: string;
  /** Where unexpected errors and traces go; the server's log otherwise. */
  log?: Log;
  /** Called with an error that is not one of @berth/api's typed errors (a bug, most likely). */
  onUnexpectedError?: (method: string, err: unknown) => void;
  /** The status an error leaves as; toGrpcStatus by default. */
  mapError?: (err: unknown) => GrpcStatus;
}

/** The status a thrown value leaves as: the one error mapping of every call. */
export function statusOf(
  err: unknown,
  opts: HandlerOptions,
  log: Log | undefined,
  method: string,
): GrpcStatus {
  if (err instanceof StatusError) return { code: err.code, details: err.details };
  const st = opts.mapError ? opts.mapError(err) : toGrpcStatus(err);
  if (!isBerthError(err)) {
    if (opts.onUnexpectedError) opts.onUnexpectedError(method, err);
    else
      (opts.log ?? log)
        ?.with({ method, error: (err as Error)?.stack ?? String(err) })
        .error('unexpected error');
  }
  return st;
}

const CANCELLED = new CanceledError('context canceled');
/** How long a client that still sends after the status gets before its stream is reset. */
const STOP_CLIENT_MS = 1000;
const DEADLINE = new DeadlineExceededError('context deadline exceeded');

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** grpc-timeout (1-8 digits and a unit) in milliseconds; undefined for a malformed value. */
export function parseTimeout(v: string): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'H':
      return n * 3_600_000;
    case 'M':
      return n * 60_000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return n / 1000;
    default:
      return n / 1_000_000;
  }
}

/** grpc-message as the gRPC spec has it: UTF-8, bytes outside 0x20-0x7E and `%` percent-encoded. */
export function encodeGrpcMessage(s: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(s)) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The 5-byte gRPC message prefix: not compressed, then the length. */
export function messagePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

const SUPPORTED_ENCODINGS = new Set(['identity', 'gzip', 'deflate']);

/** The request's grpc-encoding, or a StatusError for one we cannot decompress (as grpc-go). */
export function requestEncoding(headers: IncomingHttpHeaders): string | undefined {
  const enc = first(headers['grpc-encoding'] as string | string[] | undefined);
  if (enc === undefined || enc === 'identity') return undefined;
  if (!SUPPORTED_ENCODINGS.has(enc)) {
    throw new StatusError(
      GrpcCode.UNIMPLEMENTED,
      `grpc: Decompressor is not installed for grpc-encoding "${enc}"`,
    );
  }
  return enc;
}

/**
 * Splits a request body into gRPC messages (5-byte prefix: compressed flag, length),
 * decompressing as grpc-encoding says, refusing one over maxRecv before buffering it.
 */
export class MessageParser {
  private parts: Buffer[] = [];
  private size = 0;
  /** The length of the message whose prefix was read; -1 while waiting for a prefix. */
  private need = -1;
  private compressed = false;

  constructor(
    private readonly maxRecv: number,
    private readonly encoding: string | undefined,
  ) {}

  /** Whether a message has begun and not ended (the client half-closed mid-message if so). */
  get partial(): boolean {
    return this.size > 0 || this.need >= 0;
  }

  push(chunk: Buffer, onMessage: (msg: Buffer) => void): void {
    if (this.size === 0 && this.need < 0 && chunk.length >= 5) {
      // The common case: whole messages in one chunk, taken without copying.
      let off = 0;
      while (chunk.length - off >= 5) {
        const len = this.header(chunk, off);
        if (chunk.length - off - 5 < len) break;
        this.need = -1;
        onMessage(this.finish(chunk.subarray(off + 5, off + 5 + len)));
        off += 5 + len;
      }
      if (off === chunk.length) return;
      if (this.need >= 0) {
        this.parts.push(chunk.subarray(off + 5));
        this.size = chunk.length - off - 5;
        return;
      }
      chunk = chunk.subarray(off);
    }
    this.parts.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.size < 5) return;
        const buf = this.take(5);
        this.header(buf, 0);
      }
      if (this.size < this.need) return;
      const msg = this.take(this.need);
      this.need = -1;
      onMessage(this.finish(msg));
    }
  }

  private header(buf: Buffer, off: number): number {
    const flag = buf[off]!;
    const len = buf.readUInt32BE(off + 1);
    if (flag > 1)
      throw new StatusError(GrpcCode.INTERNAL, `grpc: received unexpected payload format ${flag}`);
    if (flag === 1 && this.encoding === undefined) {
      throw new StatusError(GrpcCode.INTERNAL, 'grpc: compressed flag set with identity or empty encoding');
    }
    if (len > this.maxRecv) {
      throw new StatusError(
        GrpcCode.RESOURCE_EXHAUSTED,
        `grpc: received message larger than max (${len} vs. ${this.maxRecv})`,
      );
    }
    this.compressed = flag === 1;
    this.need = len;
    return len;
  }

  private take(n: number): Buffer {
    const head = this.parts[0]!;
    let out: Buffer;
    if (head.length >= n) {
      out = head.subarray(0, n);
      if (head.length === n) this.parts.shift();
      else this.parts[0] = head.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const p = this.parts[0]!;
        const k = Math.min(p.length, n - filled);
        p.copy(out, filled, 0, k);
        filled += k;
        if (k === p.length) this.parts.shift();
        else this.parts[0] = p.subarray(k);
      }
    }
    this.size -= n;
    return out;
  }

  private finish(msg: Buffer): Buffer {
    if (!this.compressed) return msg;
    const opts = { maxOutputLength: this.maxRecv + 1 };
    let out: Buffer;
    try {
      out = this.encoding === 'gzip' ? gunzipSync(msg, opts) : inflateSync(msg, opts);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
        out = Buffer.alloc(this.maxRecv + 1);
      else
        throw new StatusError(
          GrpcCode.INTERNAL,
          `grpc: failed to decompress the received message: ${(err as Error).message}`,
        );
    }
    if (out.length > this.maxRecv) {
      throw new StatusError(
        GrpcCode.RESOURCE_EXHAUSTED,
        `grpc: received message after decompression larger than max (${out.length}+ vs. ${this.maxRecv})`,
      );
    }
    return out;
  }
}

/** What a Call needs from its server. */
export interface CallEnv {
  maxRecv: number;
  maxSend: number;
  log: Log | undefined;
}

/**
 * One gRPC call on an HTTP/2 stream: the @berth/api Context (namespace and lease from the
 * first value of their headers, a signal aborted by client cancellation or the deadline),
 * framed messages out, status in trailers. Handlers that want the least per-call cost
 * (Content.Read, every unary method) use it directly.
 */
export class Call {
  cancelled = false;
  /** The status the call ended with (CANCELLED until it ends). */
  code: number = GrpcCode.CANCELLED;
  private responded = false;
  private finished = false;
  private controller: AbortController | undefined;
  private reason: Error | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: (() => void)[] = [];
  readonly ctx: Context;
  /** Set once the request's messages are being read (request() or a stream reader). */
  parser: MessageParser | undefined;

  constructor(
    readonly stream: ServerHttp2Stream,
    readonly headers: IncomingHttpHeaders,
    readonly method: string,
    readonly env: CallEnv,
    readonly opts: HandlerOptions,
    private readonly encoding: string | undefined,
    timeoutMs: number | undefined,
  ) {
    stream.once('close', () => this.gone(CANCELLED));
    stream.on('error', () => this.gone(CANCELLED));
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => {
        if (this.finished) return;
        this.end(GrpcCode.DEADLINE_EXCEEDED, DEADLINE.message);
        this.abort(DEADLINE);
      }, timeoutMs);
    }
    const call = this;
    this.ctx = {
      namespace: firstMetadataValue(headers[NAMESPACE_HEADER]),
      lease: firstMetadataValue(headers[LEASE_HEADER]),
      // Most calls never look at their signal: the AbortController is made on demand.
      get signal(): AbortSignal {
        if (!call.controller) {
          call.controller = new AbortController();
          if (call.reason) call.controller.abort(call.reason);
        }
        return call.controller.signal;
      },
    };
  }

  /** fn runs once when the call is cancelled (client gone, or deadline passed). */
  onCancel(fn: () => void): void {
    if (this.reason) fn();
    else this.listeners.push(fn);
  }

  /** The client reset the stream: cancel now, before nghttp2 reports the stream closed. */
  clientReset(): void {
    this.gone(CANCELLED);
  }

  private gone(reason: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.cancelled = true;
    this.abort(reason);
  }

  private abort(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.cancelled = true;
    if (this.timer) clearTimeout(this.timer);
    this.controller?.abort(reason);
    for (const fn of this.listeners.splice(0)) fn();
  }

  /** Whether the call can still send (not ended, not cancelled, stream open). */
  get open(): boolean {
    return !this.finished && !this.stream.destroyed;
  }

  /** Reads the request's messages: onMessage for each, onEnd at the client's half-close, onError for a framing error. */
  readMessages(
    onMessage: (msg: Buffer) => void,
    onEnd: () => void,
    onError: (err: StatusError) => void,
  ): void {
    const parser = new MessageParser(this.env.maxRecv, this.encoding);
    this.parser = parser;
    let failed = false;
    const s = this.stream;
    s.on('data', (chunk: Buffer) => {
      if (failed) return;
      try {
        parser.push(chunk, onMessage);
      } catch (err) {
        failed = true;
        s.pause();
        onError(err as StatusError);
      }
    });
    s.once('end', () => {
      if (failed) return;
      if (parser.partial) {
        failed = true;
        onError(new StatusError(GrpcCode.INTERNAL, 'grpc: client half-closed in the middle of a message'));
        return;
      }
      onEnd();
    });
  }

  /** The one request message of a unary or server-streaming call, decoded. */
  request<T>(decode: (bytes: Buffer) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      let msg: Buffer | undefined;
      let count = 0;
      this.readMessages(
        (m) => {
          msg = m;
          count++;
        },
        () => {
          if (count !== 1) {
            reject(
              new StatusError(
                count === 0 ? GrpcCode.INTERNAL : GrpcCode.UNIMPLEMENTED,
                count === 0
                  ? 'grpc: no request message'
                  : `grpc: ${count} request messages for a unary request`,
              ),
            );
            return;
          }
          try {
            resolve(decode(msg!));
          } catch (err) {
            reject(err);
          }
        },
        reject,
      );
    });
  }

  private respond(): void {
    if (this.responded) return;
    this.responded = true;
    this.stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  }

  /**
   * Writes one message given as its encoded parts (prefix and payload kept apart, so a
   * payload Buffer goes out without being copied). A promise when the stream is full.
   */
  send(parts: Buffer[]): Promise<void> | undefined {
    if (!this.open) return undefined;
    this.respond();
    const s = this.stream;
    let ok = true;
    if (parts.length === 1) ok = s.write(parts[0]);
    else {
      s.cork();
      for (const p of parts) ok = s.write(p);
      s.uncork();
    }
    if (ok) return undefined;
    return new Promise((resolve) => {
      const done = () => {
        s.off('drain', done);
        s.off('close', done);
        resolve();
      };
      s.once('drain', done);
      s.once('close', done);
    });
  }

  /** Writes one message, serialised; false when the stream wants the writer to wait for 'drain'. */
  sendMessage(payload: Buffer): boolean {
    if (payload.length > this.env.maxSend) {
      throw new StatusError(
        GrpcCode.RESOURCE_EXHAUSTED,
        `grpc: trying to send message larger than max (${payload.length} vs. ${this.env.maxSend})`,
      );
    }
    return this.send([messagePrefix(payload.length), payload]) === undefined;
  }

  /** Ends the call with OK. */
  finish(): void {
    this.end(GrpcCode.OK, '');
  }

  /** Ends the call with the status of err (the server's one error mapping). */
  fail(err: unknown): void {
    if (!this.open) return;
    const st = statusOf(err, this.opts, this.env.log, this.method);
    this.end(st.code, st.details);
  }

  /** Ends the call with a status: trailers after the messages, or headers alone when none was sent. */
  end(code: number, details: string): void {
    if (!this.open) return;
    this.finished = true;
    this.code = code;
    if (this.timer) clearTimeout(this.timer);
    const trailers: Record<string, string> = { 'grpc-status': String(code) };
    if (details !== '') trailers['grpc-message'] = encodeGrpcMessage(details);
    const s = this.stream;
    // A client still sending (a failed upload) has its data dropped; a client that does not
    // end its side once it has the status gets RST_STREAM(NO_ERROR). Not at once: nghttp2
    // would send the reset ahead of the trailers.
    const stopClient = () => {
      if (s.readableEnded || s.destroyed) return;
      s.removeAllListeners('data');
      s.resume();
      const timer = setTimeout(() => s.close(), STOP_CLIENT_MS);
      timer.unref();
      s.once('close', () => clearTimeout(timer));
    };
    if (!this.responded) {
      this.responded = true;
      s.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      stopClient();
    } else {
      s.once('wantTrailers', () => {
        try {
          s.sendTrailers(trailers);
        } catch {
          // the client reset the stream meanwhile
          return;
        }
        stopClient();
      });
      s.end();
    }
  }
}
