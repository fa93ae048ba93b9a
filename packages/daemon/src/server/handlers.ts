import type { Context } from '@berth/api';
import { CanceledError } from '@berth/api';
import {
  type HandlerOptions as GrpcHandlerOptions,
  bidi as grpcBidi,
  serverStream as grpcServerStream,
  unary as grpcUnary,
  type Handler,
  type ServerStreamCall,
} from '@berth/grpc';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log';

/**
 * The handlers berthd's services register with @berth/grpc's server, which builds each
 * call's @berth/api Context (namespace, lease, cancellation, deadline), maps thrown errors
 * through toGrpcStatus and traces calls. Stream handlers are typed with grpc-js' call
 * types, the part of them the services use (write, 'data', pause/resume, cancelled,
 * request), which @berth/grpc's ServerStreamCall provides.
 */

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
  /** `<service>/<method>`, for log lines about unexpected errors and traces. */
  method?: string;
}

const grpcOpts = (opts: HandlerOptions): GrpcHandlerOptions => ({ log: opts.log, method: opts.method });

export function unary<Req, Res>(impl: UnaryImpl<Req, Res>, opts: HandlerOptions = {}): Handler {
  return grpcUnary<Req, Res>((ctx, req, call) => impl(ctx, req, call as never), grpcOpts(opts));
}

export function serverStream<Req, Res>(impl: ServerStreamImpl<Req, Res>, opts: HandlerOptions = {}): Handler {
  return grpcServerStream<Req, Res>(
    (ctx, req, call) => impl(ctx, req, call as unknown as grpc.ServerWritableStream<Req, Res>),
    grpcOpts(opts),
  );
}

export function bidi<Req, Res>(impl: BidiImpl<Req, Res>, opts: HandlerOptions = {}): Handler {
  return grpcBidi<Req, Res>(
    (ctx, call) => impl(ctx, call as unknown as grpc.ServerDuplexStream<Req, Res>),
    grpcOpts(opts),
  );
}

/** Ends a stream call with the error's status (unless the client already went away). */
export function failStream(
  call: grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>,
  err: unknown,
  _opts?: HandlerOptions,
): void {
  (call as unknown as ServerStreamCall).fail(err);
}

/**
 * Writes to a server stream. Returns undefined when the stream takes more at once, else a
 * promise for when it drains; rejects when the call goes away.
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
