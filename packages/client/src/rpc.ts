import {
  type BerthError,
  CanceledError,
  type Context,
  DeadlineExceededError,
  fromGrpcStatus,
  GrpcCode,
  LEASE_HEADER,
  NAMESPACE_HEADER,
  UnavailableError,
} from '@berth/api';
import * as grpc from '@grpc/grpc-js';

/** The namespace and lease of ctx as gRPC metadata, the headers containerd reads. */
export function metadataOf(ctx: Context): grpc.Metadata {
  const md = new grpc.Metadata();
  if (ctx.namespace) md.set(NAMESPACE_HEADER, ctx.namespace);
  if (ctx.lease) md.set(LEASE_HEADER, ctx.lease);
  return md;
}

/** The error to report when ctx's signal stopped a call (Go's context errors, same words). */
export function abortedError(signal: AbortSignal): BerthError {
  const reason = signal.reason as { name?: string } | undefined;
  if (reason?.name === 'TimeoutError')
    return new DeadlineExceededError('context deadline exceeded', { cause: reason });
  return new CanceledError('context canceled', { cause: reason });
}

/**
 * Converts what a grpc-js call failed with into a typed berth error. A status from the
 * server goes through fromGrpcStatus (the one mapping); a call we cancelled because
 * ctx's signal fired reports that instead of grpc's "Cancelled on client".
 */
export function convertError(err: unknown, ctx: Context, target?: string): Error {
  if (ctx.signal?.aborted) return abortedError(ctx.signal);
  const e = err as Partial<grpc.ServiceError> | undefined;
  if (e && typeof e.code === 'number') {
    if (e.code === GrpcCode.UNAVAILABLE && target && /no connection established/i.test(e.details ?? '')) {
      // grpc-js says "No connection established. Last error: Error: connect ENOENT /x. Resolution note: ".
      const last = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/s.exec(e.details ?? '')?.[1];
      return new UnavailableError(`failed to dial "${target}": ${last || e.details}`, { cause: err });
    }
    return fromGrpcStatus({ code: e.code, details: e.details ?? e.message });
  }
  return err instanceof Error ? err : new Error(String(err));
}

type UnaryMethod = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

/** One unary call with ctx's metadata and cancellation; resolves with the decoded response. */
export function unary<Res>(
  client: grpc.Client,
  method: string,
  request: object,
  ctx: Context,
  target?: string,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const signal = ctx.signal;
    if (signal?.aborted) {
      reject(abortedError(signal));
      return;
    }
    const fn = (client as unknown as Record<string, UnaryMethod>)[method];
    if (typeof fn !== 'function') {
      reject(new Error(`no method ${method} on ${client.constructor.name}`));
      return;
    }
    const onAbort = (): void => call.cancel();
    const call = fn.call(client, request, metadataOf(ctx), {}, (err, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(convertError(err, ctx, target));
      else resolve(response as Res);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Server-streaming call as an async iterable of messages; breaking out cancels the call. */
export async function* serverStream<Res>(
  client: grpc.Client,
  method: string,
  request: object,
  ctx: Context,
  target?: string,
): AsyncGenerator<Res> {
  const signal = ctx.signal;
  if (signal?.aborted) throw abortedError(signal);
  const fn = (
    client as unknown as Record<string, (r: unknown, m: grpc.Metadata) => grpc.ClientReadableStream<Res>>
  )[method];
  const call = fn.call(client, request, metadataOf(ctx));
  const onAbort = (): void => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let done = false;
  try {
    for await (const message of call) yield message as Res;
    done = true;
  } catch (err) {
    throw convertError(err, ctx, target);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // A consumer that stopped early must not leave the server streaming into the void.
    if (!done) call.cancel();
  }
}
