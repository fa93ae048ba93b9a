import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  AlreadyExistsError,
  CanceledError,
  type Context,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  isBerthError,
  lstatQuiet,
  NotImplementedError,
  ResourceExhaustedError,
  TTRPC_NAMESPACE_HEADER,
  toGrpcStatus,
  UnavailableError,
  unlinkQuiet,
} from '@berth/api';
import { drained, sendFrame, writeFrame } from './channel';
import { decodeRequest, encodeResponseFrame, type Payload, type RequestEnvelope } from './envelope';
import { Flag, FrameDecoder, type FrameSink, HEADER_LENGTH, MESSAGE_LENGTH_MAX, MessageType } from './frame';
import { metadataRecord, socketPath, type TtrpcMetadata } from './metadata';
import {
  decodePayload,
  type MethodTypes,
  messageBytes,
  type ServiceTypes,
  serviceLookup,
  toPayload,
} from './methods';
import { MessageQueue } from './queue';

/** What a handler learns about its call. Usable wherever an api Context is expected. */
export interface TtrpcCallContext extends Context {
  readonly service: string;
  readonly method: string;
  /** Every metadata key the client sent, with all its values. */
  readonly metadata: TtrpcMetadata;
  /** From `containerd-namespace-ttrpc`, as containerd's shims read it. */
  readonly namespace?: string;
  /** Aborted at the client's deadline (reason: DeadlineExceededError) or when the connection drops. */
  readonly signal: AbortSignal;
  /** The client's deadline in Date.now() milliseconds, when it sent one. */
  readonly deadline?: number;
}

/** The server side of a streaming call. Iterating yields the client's messages. */
export interface ServerStream<Req = any, Res = any> extends AsyncIterable<Req> {
  /** The next client message, or undefined once the client closed its side. */
  recv(): Promise<Req | undefined>;
  /** Sends one response message (server-streaming methods only). */
  send(message: Res): Promise<void>;
}

export type UnaryHandler<Req = any, Res = any> = (request: Req, ctx: TtrpcCallContext) => Res | Promise<Res>;
/** Returns the single response of a client-streaming method; ignored for server streams. */
export type StreamHandler<Req = any, Res = any> = (
  stream: ServerStream<Req, Res>,
  ctx: TtrpcCallContext,
) => Res | undefined | Promise<Res | undefined>;
/** Handlers by method name as the proto spells it ('State', 'Forward'). */
export type ServiceHandlers = Readonly<Record<string, UnaryHandler | StreamHandler>>;

export interface TtrpcServerOptions {
  /** Told about transport failures nobody else sees (listener errors, unexpected socket errors). */
  onError?: (err: Error) => void;
}

export interface ListenOptions {
  /** Permission bits of the socket file; 0600 unless given. */
  mode?: number;
}

export interface CloseOptions {
  /** After this long, connections still busy are cut and their handlers aborted. */
  timeoutMs?: number;
}

interface Route {
  readonly service: string;
  readonly method: string;
  readonly types: MethodTypes;
  readonly handler: UnaryHandler | StreamHandler;
  readonly streaming: boolean;
}

const EMPTY = Buffer.alloc(0);
/** setTimeout fires at once for delays above this; longer deadlines simply never fire. */
const MAX_TIMER_MS = 0x7fffffff;

/**
 * A ttrpc server: register services, then listen on a unix socket path, on an
 * inherited listening fd (a shim gets its socket as fd 3) or serve single sockets.
 */
export class TtrpcServer {
  private readonly routes = new Map<string, Map<string, Route>>();
  private readonly listeners = new Set<net.Server>();
  private readonly connections = new Set<ServerConnection>();
  private closePromise: Promise<void> | undefined;
  private readonly onError: (err: Error) => void;

  constructor(options: TtrpcServerOptions = {}) {
    this.onError = options.onError ?? (() => {});
  }

  /** True once close() was called. */
  get closing(): boolean {
    return this.closePromise !== undefined;
  }

  /**
   * Registers a service. Method types come from `types` when given, else from
   * @berth/api's proto tree by the service's full name. Methods without a handler
   * answer UNIMPLEMENTED, as Go's ttrpc does for unknown ones.
   */
  register(serviceName: string, handlers: ServiceHandlers, types?: ServiceTypes): void {
    if (this.routes.has(serviceName)) {
      throw new AlreadyExistsError(`ttrpc: service ${serviceName}: already registered`);
    }
    const lookup = serviceLookup(serviceName, types);
    const methods = new Map<string, Route>();
    for (const method of Object.keys(handlers)) {
      const handler = handlers[method];
      if (typeof handler !== 'function') {
        throw new InvalidArgumentError(
          `ttrpc: service ${serviceName}: handler for ${method} is not a function`,
        );
      }
      const t = lookup(method);
      if (t === undefined) {
        throw new InvalidArgumentError(
          `ttrpc: service ${serviceName} has no method ${JSON.stringify(method)}`,
        );
      }
      methods.set(method, {
        service: serviceName,
        method,
        types: t,
        handler,
        streaming: t.requestStream || t.responseStream,
      });
    }
    this.routes.set(serviceName, methods);
  }

  /** @internal the route for a call, or the error Go's ttrpc answers with. */
  route(service: string, method: string): Route | NotImplementedError {
    const methods = this.routes.get(service);
    if (methods === undefined) return new NotImplementedError(`service ${service}`);
    return methods.get(method) ?? new NotImplementedError(`method ${method}`);
  }

  /**
   * Listens on a unix socket (`/path` or `unix:///path`). A stale socket file left by a
   * dead server is replaced; a live one is AlreadyExists. The file gets `mode` (0600).
   */
  async listen(address: string, options: ListenOptions = {}): Promise<void> {
    this.assertOpen();
    const file = socketPath(address);
    const abstract = file.startsWith('\0');
    if (!abstract) {
      await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await removeStaleSocket(file);
    }
    const server = net.createServer();
    await listenOn(server, file);
    if (!abstract) {
      try {
        await fs.promises.chmod(file, options.mode ?? 0o600);
      } catch (err) {
        server.close();
        throw err;
      }
    }
    this.attach(server);
  }

  /** Serves on an already listening socket inherited as a file descriptor (fd 3 for shims). */
  async listenFd(fd: number): Promise<void> {
    this.assertOpen();
    if (!Number.isInteger(fd) || fd < 0) throw new InvalidArgumentError(`ttrpc: invalid listening fd ${fd}`);
    const server = net.createServer();
    await listenOn(server, { fd });
    this.attach(server);
  }

  /** Serves one connected socket (a socketpair end, a connection accepted elsewhere). */
  serveConnection(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(this, socket, this.onError);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  /**
   * Stops accepting, lets in-flight calls finish and their responses go out, then
   * closes every connection. New requests meanwhile are answered UNAVAILABLE.
   * Do not await this from inside a handler: the handler is one of the calls it waits for.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.closePromise ??= this.shutdown(options.timeoutMs);
    return this.closePromise;
  }

  private async shutdown(timeoutMs: number | undefined): Promise<void> {
    const listenersClosed = [...this.listeners].map(
      (l) => new Promise<void>((resolve) => l.close(() => resolve())),
    );
    this.listeners.clear();
    for (const conn of this.connections) conn.drain();
    const all = Promise.all([...this.connections].map((c) => c.closed));
    if (timeoutMs !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, true);
      });
      const timedOut = await Promise.race([all.then(() => false), expired]);
      clearTimeout(timer);
      if (timedOut) for (const conn of this.connections) conn.destroy();
    }
    await all;
    await Promise.all(listenersClosed);
  }

  private assertOpen(): void {
    if (this.closing) throw new FailedPreconditionError('ttrpc: server closed');
  }

  private attach(server: net.Server): void {
    this.listeners.add(server);
    server.on('connection', (socket: net.Socket) => this.serveConnection(socket));
    server.on('error', (err) => this.onError(err));
  }
}

function listenOn(server: net.Server, where: string | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (typeof where === 'string') server.listen(where, done);
    else server.listen(where, done);
  });
}

function canConnect(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function removeStaleSocket(file: string): Promise<void> {
  // lstatQuiet and unlinkQuiet, not fs.lstat and fs.rm: a plain stat of a socket breaks
  // later require()s in this process (see @berth/api special-files).
  const st = lstatQuiet(file);
  if (st === undefined) return;
  if (!st.isSocket()) throw new AlreadyExistsError(`ttrpc socket ${file}: exists and is not a socket`);
  if (await canConnect(file)) throw new AlreadyExistsError(`ttrpc socket ${file}: already in use`);
  unlinkQuiet(file);
}

/** One accepted connection: decodes frames, runs calls concurrently, writes responses. */
class ServerConnection implements FrameSink {
  private readonly decoder = new FrameDecoder(this);
  private readonly calls = new Map<number, ServerCall>();
  private lastStreamId = 0;
  private active = 0;
  private draining = false;
  readonly closed: Promise<void>;

  constructor(
    private readonly server: TtrpcServer,
    readonly socket: net.Socket,
    private readonly onError: (err: Error) => void,
  ) {
    let resolveClosed!: () => void;
    this.closed = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') this.onError(err);
    });
    socket.on('close', () => {
      const reason = new CanceledError('ttrpc: connection closed');
      for (const call of this.calls.values()) call.abort(reason);
      this.calls.clear();
      resolveClosed();
    });
    if (socket.destroyed) resolveClosed();
  }

  frame(streamId: number, type: number, flags: number, payload: Buffer): void {
    if (type === MessageType.REQUEST) this.onRequest(streamId, flags, payload);
    else if (type === MessageType.DATA) this.onData(streamId, flags, payload);
    // Other types are ignored, for compatibility with future protocol additions.
  }

  oversized(streamId: number, _type: number, length: number): void {
    this.respondError(
      streamId,
      new ResourceExhaustedError(
        `message length ${length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
      ),
    );
  }

  private onRequest(streamId: number, flags: number, payload: Buffer): void {
    if (streamId % 2 !== 1) {
      this.respondError(
        streamId,
        new InvalidArgumentError('StreamID must be odd for client initiated streams'),
      );
      return;
    }
    if (streamId <= this.lastStreamId) {
      this.respondError(streamId, new InvalidArgumentError('StreamID cannot be re-used and must increment'));
      return;
    }
    this.lastStreamId = streamId;
    let req: RequestEnvelope;
    try {
      req = decodeRequest(payload);
    } catch (err) {
      this.respondError(
        streamId,
        new InvalidArgumentError(`unmarshal request error: ${(err as Error).message}`),
      );
      return;
    }
    if (this.draining) {
      this.respondError(streamId, new UnavailableError('ttrpc: server closed'));
      return;
    }
    const route = this.server.route(req.service, req.method);
    if (route instanceof NotImplementedError) {
      this.respondError(streamId, route);
      return;
    }
    const call = new ServerCall(this, streamId, route, req);
    this.calls.set(streamId, call);
    this.active++;
    if (route.streaming) {
      const queue = call.queue!;
      if (!route.types.requestStream || req.hasPayload) queue.push(req.payload);
      if ((flags & Flag.REMOTE_OPEN) === 0) queue.end();
    }
    void call.run();
  }

  private onData(streamId: number, flags: number, payload: Buffer): void {
    const call = this.calls.get(streamId);
    if (call === undefined) {
      this.respondError(streamId, new InvalidArgumentError('StreamID is no longer active'));
      return;
    }
    const queue = call.queue;
    if (queue === undefined) return; // data on a unary call: nothing can consume it
    if ((flags & Flag.NO_DATA) === 0) queue.push(payload);
    if ((flags & Flag.REMOTE_CLOSED) !== 0) queue.end();
  }

  private respondError(streamId: number, err: Error): void {
    const { code, details } = toGrpcStatus(err);
    sendFrame(this.socket, encodeResponseFrame(code, details, undefined), streamId, MessageType.RESPONSE, 0);
  }

  /** @internal a data frame from a handler's stream.send(). */
  async sendData(call: ServerCall, body: Buffer): Promise<void> {
    if (!writeFrame(this.socket, call.streamId, MessageType.DATA, 0, body)) {
      if (this.socket.destroyed) throw new UnavailableError('ttrpc: closed');
      await drained(this.socket);
    }
  }

  /** @internal a call's handler settled: send its response, or close its stream. */
  finish(call: ServerCall, code: number, message: string, payload: Payload): void {
    if (this.calls.get(call.streamId) === call) this.calls.delete(call.streamId);
    this.active--;
    const route = call.route;
    if (route.streaming && route.types.responseStream && code === 0) {
      writeFrame(this.socket, call.streamId, MessageType.DATA, Flag.REMOTE_CLOSED | Flag.NO_DATA, EMPTY);
    } else {
      let frame: Buffer;
      try {
        frame = encodeResponseFrame(code, message, payload);
      } catch (err) {
        const st = toGrpcStatus(
          new Error(`ttrpc: ${route.service}/${route.method}: encode response: ${(err as Error).message}`),
        );
        frame = encodeResponseFrame(st.code, st.details, undefined);
      }
      const length = frame.length - HEADER_LENGTH;
      if (length > MESSAGE_LENGTH_MAX) {
        const st = toGrpcStatus(
          new ResourceExhaustedError(
            `ttrpc: ${route.service}/${route.method}: response of ${length} bytes exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`,
          ),
        );
        frame = encodeResponseFrame(st.code, st.details, undefined);
      }
      sendFrame(this.socket, frame, call.streamId, MessageType.RESPONSE, 0);
    }
    if (this.draining && this.active === 0) this.endSocket();
  }

  /** Stop taking requests; close once nothing is in flight. */
  drain(): void {
    this.draining = true;
    if (this.active === 0) this.endSocket();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private endSocket(): void {
    // Our FIN goes out after the last response; the peer need not answer it.
    this.socket.end(() => this.socket.destroy());
  }
}

/** One request being handled. */
class ServerCall implements ServerStream {
  readonly ctx: TtrpcCallContext;
  readonly queue: MessageQueue<Buffer> | undefined;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private done = false;

  constructor(
    private readonly conn: ServerConnection,
    readonly streamId: number,
    readonly route: Route,
    private readonly req: RequestEnvelope,
  ) {
    const metadata = metadataRecord(req.metadata);
    let deadline: number | undefined;
    if (req.timeoutNano > 0) {
      const ms = Math.ceil(req.timeoutNano / 1e6);
      deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) this.timer = setTimeout(expire, ms, this);
    }
    this.ctx = {
      service: route.service,
      method: route.method,
      metadata,
      namespace: metadata[TTRPC_NAMESPACE_HEADER]?.[0],
      signal: this.controller.signal,
      deadline,
    };
    if (route.streaming) this.queue = new MessageQueue<Buffer>();
  }

  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    this.queue?.fail(reason);
  }

  async run(): Promise<void> {
    const { route } = this;
    let code = 0;
    let message = '';
    let payload: Payload;
    try {
      if (route.streaming) {
        const result = await (route.handler as StreamHandler)(this, this.ctx);
        if (!route.types.responseStream) payload = this.responsePayload(result);
      } else {
        const request = decodePayload(route.types.requestType, this.req.payload, 'request');
        payload = this.responsePayload(await (route.handler as UnaryHandler)(request, this.ctx));
      }
    } catch (err) {
      const reason = this.controller.signal.reason;
      // A handler that gives up on its aborted signal usually throws a plain AbortError.
      const st = toGrpcStatus(!isBerthError(err) && isBerthError(reason) ? reason : err);
      code = st.code;
      message = st.details;
      payload = undefined;
    }
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.conn.finish(this, code, message, payload);
  }

  /** A handler's result as a payload; a result that does not encode is the server's fault (UNKNOWN). */
  private responsePayload(result: unknown): Payload {
    try {
      return toPayload(this.route.types.responseType, (result ?? {}) as object);
    } catch (err) {
      throw new Error(
        `ttrpc: ${this.route.service}/${this.route.method}: encode response: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  // ServerStream, handed to streaming handlers.

  async recv(): Promise<unknown> {
    const bytes = await this.queue!.next();
    if (bytes === undefined) return undefined;
    return decodePayload(this.route.types.requestType, bytes, 'request');
  }

  async send(message: unknown): Promise<void> {
    const { route } = this;
    if (!route.types.responseStream) {
      throw new FailedPreconditionError(`ttrpc: ${route.service}/${route.method} does not stream responses`);
    }
    if (this.done)
      throw new FailedPreconditionError(`ttrpc: ${route.service}/${route.method}: stream is closed`);
    if (this.controller.signal.aborted) throw this.controller.signal.reason;
    let body: Buffer;
    try {
      body = messageBytes(route.types.responseType, message as object);
    } catch (err) {
      throw new InvalidArgumentError(
        `ttrpc: ${route.service}/${route.method}: encode response: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (body.length > MESSAGE_LENGTH_MAX) {
      throw new ResourceExhaustedError(
        `ttrpc: ${route.service}/${route.method}: message of ${body.length} bytes exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`,
      );
    }
    await this.conn.sendData(this, body);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<unknown> {
    for (;;) {
      const m = await this.recv();
      if (m === undefined) return;
      yield m;
    }
  }
}

function expire(call: ServerCall): void {
  call.abort(
    new DeadlineExceededError(`ttrpc: ${call.route.service}/${call.route.method}: deadline exceeded`),
  );
}
