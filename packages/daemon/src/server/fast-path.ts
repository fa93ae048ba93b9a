import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import {
  CanceledError,
  CONVERSION_OPTIONS,
  type Context,
  firstMetadataValue,
  GrpcCode,
  InvalidArgumentError,
  LEASE_HEADER,
  NAMESPACE_HEADER,
  protoType,
  ResourceExhaustedError,
  toGrpcStatus,
} from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import { type Logger, nullLogger } from '../log';
import { type HandlerOptions, statusOf, traceCall, traceStart, type UnaryImpl } from './handlers';

/**
 * Every unary method, and Content.Read, is served straight from Node's HTTP/2 stream,
 * ahead of grpc-js. containerd's clients read a blob with one Read call per 32 KiB and make
 * a couple of dozen unary calls to start a container, so the per-call cost of grpc-js'
 * general machinery (interceptor chain, object-mode streams, metadata objects) would
 * dominate the daemon's side. Streams other than Read, and any call these handlers do not
 * fully understand (compression, deadlines), go to grpc-js.
 */
export type RawHandler = (call: RawCall) => void;

const CANCELLED = new CanceledError('context canceled');

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

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

/** Only what these handlers implement: identity encoding, no deadline. */
function servable(headers: IncomingHttpHeaders): boolean {
  const type = firstHeader(headers['content-type']) ?? '';
  if (headers[':method'] !== 'POST' || !type.startsWith('application/grpc')) return false;
  const enc = firstHeader(headers['grpc-encoding']);
  if (enc !== undefined && enc !== 'identity') return false;
  return headers['grpc-timeout'] === undefined;
}

/** One gRPC call on a raw HTTP/2 stream: unary request in, framed messages out, status in trailers. */
export class RawCall {
  cancelled = false;
  private responded = false;
  private finished = false;
  private controller: AbortController | undefined;
  /** Called once when the client goes away before the call finished. */
  onCancel: (() => void) | undefined;
  readonly ctx: Context;

  constructor(
    readonly stream: ServerHttp2Stream,
    readonly headers: IncomingHttpHeaders,
    private readonly maxRecv: number,
    private readonly log: Logger,
    readonly method: string,
  ) {
    const onGone = () => {
      if (this.finished || this.cancelled) return;
      this.cancelled = true;
      this.controller?.abort(CANCELLED);
      this.onCancel?.();
    };
    stream.once('close', onGone);
    stream.on('error', onGone);
    const call = this;
    this.ctx = {
      namespace: firstMetadataValue(headers[NAMESPACE_HEADER]),
      lease: firstMetadataValue(headers[LEASE_HEADER]),
      get signal(): AbortSignal {
        if (!call.controller) {
          call.controller = new AbortController();
          if (call.cancelled) call.controller.abort(CANCELLED);
        }
        return call.controller.signal;
      },
    };
  }

  /** The request message, decoded (the client half-closes after it, as unary and server-streaming calls do). */
  request<T>(decode: (bytes: Buffer) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      this.stream.on('data', (b: Buffer) => {
        size += b.length;
        if (size > this.maxRecv + 5) {
          this.stream.removeAllListeners('data');
          reject(
            new ResourceExhaustedError(`received message larger than max (${size - 5} vs. ${this.maxRecv})`),
          );
          return;
        }
        parts.push(b);
      });
      this.stream.once('end', () => {
        const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
        if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
          reject(new Error(`${this.method}: malformed request message`));
          return;
        }
        try {
          resolve(decode(body.subarray(5)));
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  private respond(): void {
    if (this.responded) return;
    this.responded = true;
    this.stream.respond(
      { ':status': 200, 'content-type': 'application/grpc+proto' },
      { waitForTrailers: true },
    );
  }

  /**
   * Writes one message given as its encoded parts (prefix and payload kept apart, so a
   * payload Buffer goes out without being copied). A promise when the stream is full.
   */
  send(parts: Buffer[]): Promise<void> | undefined {
    if (this.cancelled || this.stream.destroyed) return undefined;
    this.respond();
    const s = this.stream;
    s.cork();
    let ok = true;
    for (const p of parts) ok = s.write(p);
    s.uncork();
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

  /** Ends the call with OK. */
  finish(): void {
    this.end(GrpcCode.OK, '');
  }

  /** Ends the call with a status a grpc-js handler gave (already mapped to a code). */
  failWith(code: number, details: string): void {
    this.end(code, details);
  }

  /** Ends the call with the status of err (through toGrpcStatus, as every other handler). */
  fail(err: unknown): void {
    const st = statusOf(err, { log: this.log, method: this.method });
    this.end(st.code, st.details);
  }

  private end(code: number, details: string): void {
    if (this.finished || this.cancelled || this.stream.destroyed) return;
    this.finished = true;
    const trailers = { 'grpc-status': String(code), 'grpc-message': encodeURI(details) };
    if (!this.responded) {
      this.responded = true;
      this.stream.respond(
        { ':status': 200, 'content-type': 'application/grpc+proto', ...trailers },
        { endStream: true },
      );
      return;
    }
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(trailers));
    this.stream.end();
  }
}

/** `ok` when the fast paths are in place; false when grpc-js' internals were not as expected. */
export function installFastPaths(
  server: grpc.Server,
  routes: ReadonlyMap<string, RawHandler>,
  opts: { maxRecvMessageSize: number; log?: Logger },
): boolean {
  const log = opts.log ?? nullLogger;
  const servers = (server as unknown as { http2Servers?: Map<NodeJS.EventEmitter, unknown> }).http2Servers;
  if (!servers || servers.size === 0 || routes.size === 0) return false;
  for (const h2 of servers.keys()) {
    const grpcListeners = h2.listeners('stream') as ((...args: unknown[]) => void)[];
    if (grpcListeners.length === 0) return false;
    h2.removeAllListeners('stream');
    h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ...rest: unknown[]) => {
      const path = headers[':path'];
      const route = path === undefined ? undefined : routes.get(path);
      if (route && servable(headers)) {
        route(new RawCall(stream, headers, opts.maxRecvMessageSize, log, path!));
        return;
      }
      for (const l of grpcListeners) l.call(h2, stream, headers, ...rest);
    });
  }
  return true;
}

/** The 5-byte gRPC message prefix: not compressed, then the length. */
function messagePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/** Serialises and sends a unary call's one response, then ends it with OK. */
function sendResponse(
  call: RawCall,
  method: grpc.MethodDefinition<any, any>,
  res: unknown,
  maxSend: number,
): void {
  const payload = method.responseSerialize(res);
  if (payload.length > maxSend) {
    throw new ResourceExhaustedError(
      `${method.path.slice(1)}: response message larger than max (${payload.length} vs. ${maxSend})`,
    );
  }
  call.send([messagePrefix(payload.length), payload]);
  call.finish();
}

function requestDecoder(method: grpc.MethodDefinition<any, any>): (bytes: Buffer) => unknown {
  return (bytes) => {
    try {
      return method.requestDeserialize(bytes);
    } catch (err) {
      throw new InvalidArgumentError(`decode ${method.path.slice(1)} request: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
}

/**
 * A unary grpc-js handler that unary() did not make (the snapshotter package's, say),
 * served from HTTP/2 all the same: it gets a call object with what grpc-js gives a unary
 * handler (request, metadata with the namespace and lease, cancellation, peer, deadline)
 * and answers through the usual callback.
 */
export function rawGrpcUnary(
  method: grpc.MethodDefinition<any, any>,
  handler: grpc.handleUnaryCall<any, any>,
  maxSend: number,
): RawHandler {
  const decode = requestDecoder(method);
  return (call) => {
    call.request(decode).then(
      (request) => {
        const metadata = new grpc.Metadata();
        if (call.ctx.namespace !== undefined) metadata.set(NAMESPACE_HEADER, call.ctx.namespace);
        if (call.ctx.lease !== undefined) metadata.set(LEASE_HEADER, call.ctx.lease);
        const fake = Object.assign(new EventEmitter(), {
          request,
          metadata,
          get cancelled() {
            return call.cancelled;
          },
          getPeer: () => 'unix:',
          getDeadline: () => Infinity,
          getPath: () => method.path,
          sendMetadata: () => {},
        });
        call.onCancel = () => fake.emit('cancelled');
        const callback: grpc.sendUnaryData<unknown> = (err, res) => {
          if (err) {
            call.failWith(err.code ?? GrpcCode.UNKNOWN, err.details ?? (err as Error).message ?? '');
            return;
          }
          try {
            sendResponse(call, method, res, maxSend);
          } catch (e) {
            call.fail(e);
          }
        };
        try {
          handler(fake as unknown as grpc.ServerUnaryCall<any, any>, callback);
        } catch (err) {
          call.fail(err);
        }
      },
      (err) => call.fail(err),
    );
  };
}

/**
 * A unary method served from HTTP/2 by the same implementation grpc-js would run, with the
 * method's own (de)serialisers. containerd's clients make a couple of dozen unary calls to
 * start one container; grpc-js' per-call machinery was most of the daemon's time in them.
 */
export function rawUnary(
  method: grpc.MethodDefinition<any, any>,
  impl: UnaryImpl<any, any>,
  opts: HandlerOptions,
  maxSend: number,
): RawHandler {
  const decode = requestDecoder(method);
  return (call) => {
    const started = traceStart(opts);
    call
      .request(decode)
      .then((req) => impl(call.ctx, req, undefined as never))
      .then((res) => {
        sendResponse(call, method, res, maxSend);
        traceCall(opts, started, GrpcCode.OK);
      })
      .catch((err) => {
        call.fail(err);
        traceCall(opts, started, toGrpcStatus(err).code);
      });
  };
}
