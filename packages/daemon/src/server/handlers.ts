import {
  CanceledError,
  type Context,
  firstMetadataValue,
  isBerthError,
  LEASE_HEADER,
  NAMESPACE_HEADER,
  toGrpcStatus,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { type Logger, nullLogger } from '../log';

/**
 * The edge between grpc-js and berth's services: every handler gets an @berth/api Context
 * built from the call's metadata (namespace, lease, cancellation) and every thrown error
 * leaves through toGrpcStatus, the one mapping to gRPC codes.
 */

const header = (metadata: grpc.Metadata, key: string): string | undefined =>
  firstMetadataValue(metadata.get(key));

/** The reason a cancelled call's signal carries; one shared value (creating one per call is costly). */
const CANCELLED = new CanceledError('context canceled');

/**
 * The Context of a call: `containerd-namespace` and `containerd-lease` from its metadata,
 * and a signal that aborts when the client cancels. The AbortController is made only when
 * someone asks for the signal: most calls never do, and containerd's reader cancels every
 * Read call it has read enough of.
 */
export function contextOf(
  call:
    | grpc.ServerUnaryCall<any, any>
    | grpc.ServerWritableStream<any, any>
    | grpc.ServerDuplexStream<any, any>,
): Context {
  let controller: AbortController | undefined;
  let cancelled = false;
  (call as NodeJS.EventEmitter).once('cancelled', () => {
    cancelled = true;
    controller?.abort(CANCELLED);
  });
  return {
    namespace: header(call.metadata, NAMESPACE_HEADER),
    lease: header(call.metadata, LEASE_HEADER),
    get signal(): AbortSignal {
      if (!controller) {
        controller = new AbortController();
        if (cancelled) controller.abort(CANCELLED);
      }
      return controller.signal;
    },
  };
}

export type UnaryImpl<Req, Res> = (
  ctx: Context,
  req: Req,
  call: grpc.ServerUnaryCall<Req, Res>,
) => Promise<Res> | Res;
export type ServerStreamImpl<Req, Res> = (
  ctx: Context,
  req: Req,
  call: grpc.ServerWritableStream<Req, Res>,
) => Promise<void>;
export type BidiImpl<Req, Res> = (ctx: Context, call: grpc.ServerDuplexStream<Req, Res>) => Promise<void>;

export interface HandlerOptions {
  log?: Logger;
  /** `<service>/<method>`, for log lines about unexpected errors. */
  method?: string;
}

/** The status a thrown value leaves as (toGrpcStatus); unexpected errors are logged with their stack. */
export function statusOf(err: unknown, opts: HandlerOptions): grpc.StatusObject {
  const st = toGrpcStatus(err);
  if (!isBerthError(err)) {
    // A plain Error here is a bug or an unexpected system error: keep its trace in the log.
    const log = opts.log ?? nullLogger;
    log.with({ method: opts.method, error: (err as Error)?.stack ?? String(err) }).error('unexpected error');
  }
  return { code: st.code, details: st.details, metadata: undefined as unknown as grpc.Metadata };
}

/**
 * The implementation behind each handler unary() made, so the server can also serve the
 * method straight from HTTP/2 (server/fast-path.ts) with the very same code.
 */
export const unaryImplementations = new WeakMap<
  (...args: any[]) => unknown,
  { impl: UnaryImpl<any, any>; opts: HandlerOptions }
>();

/** When tracing, the start time of a unary call for traceCall; undefined otherwise. */
export const traceStart = (opts: HandlerOptions): number | undefined =>
  opts.log?.enabled('trace') ? performance.now() : undefined;

/** Logs a finished unary call with its duration, when tracing (started is then defined). */
export function traceCall(opts: HandlerOptions, started: number | undefined, code: number): void {
  if (started === undefined) return;
  const ms = (performance.now() - started).toFixed(2);
  (opts.log ?? nullLogger).with({ method: opts.method, ms, code }).trace('call');
}

export function unary<Req, Res>(
  impl: UnaryImpl<Req, Res>,
  opts: HandlerOptions = {},
): grpc.handleUnaryCall<Req, Res> {
  const handler: grpc.handleUnaryCall<Req, Res> = (call, callback) => {
    // At trace level every unary call is logged with its duration, for profiling a request path.
    const started = traceStart(opts);
    const reply = (err: grpc.ServiceError | null, res?: Res): void => {
      traceCall(opts, started, err?.code ?? 0);
      callback(err, res);
    };
    let result: Promise<Res> | Res;
    try {
      result = impl(contextOf(call), call.request, call);
    } catch (err) {
      reply(statusOf(err, opts) as grpc.ServiceError);
      return;
    }
    Promise.resolve(result).then(
      (res) => reply(null, res),
      (err) => reply(statusOf(err, opts) as grpc.ServiceError),
    );
  };
  unaryImplementations.set(handler, { impl, opts });
  return handler;
}

/** Ends a stream call with the error's status (unless the client already went away). */
export function failStream(
  call: grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>,
  err: unknown,
  opts: HandlerOptions,
): void {
  if (call.cancelled || call.destroyed) return;
  call.emit('error', statusOf(err, opts));
}

/** Runs a streaming handler: ends the call when it resolves, with its error's status when it throws. */
function runStream(
  call: grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>,
  run: () => Promise<void>,
  opts: HandlerOptions,
): void {
  let p: Promise<void>;
  try {
    p = run();
  } catch (err) {
    failStream(call, err, opts);
    return;
  }
  p.then(
    () => {
      if (!call.cancelled && !call.destroyed) call.end();
    },
    (err) => failStream(call, err, opts),
  );
}

export function serverStream<Req, Res>(
  impl: ServerStreamImpl<Req, Res>,
  opts: HandlerOptions = {},
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => runStream(call, () => impl(contextOf(call), call.request, call), opts);
}

export function bidi<Req, Res>(
  impl: BidiImpl<Req, Res>,
  opts: HandlerOptions = {},
): grpc.handleBidiStreamingCall<Req, Res> {
  return (call) => runStream(call, () => impl(contextOf(call), call), opts);
}

/**
 * Writes to a server stream. Returns undefined when the stream takes more at once, else a
 * promise for when it drains (grpc-js backpressure); rejects when the call goes away.
 */
export function send<Res>(
  call: grpc.ServerWritableStream<any, Res> | grpc.ServerDuplexStream<any, Res>,
  msg: Res,
): Promise<void> | undefined {
  if (call.write(msg)) return undefined;
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      call.off('drain', onDrain);
      call.off('close', onClose);
      call.off('cancelled', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new CanceledError('context canceled'));
    call.once('drain', onDrain);
    call.once('close', onClose);
    call.once('cancelled', onClose);
  });
}
