import * as http2 from 'node:http2';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Context } from '@berth/api';
import { GrpcCode } from '@berth/api';
import {
  Call,
  type CallEnv,
  type HandlerOptions,
  type Log,
  parseTimeout,
  requestEncoding,
  StatusError,
} from './call';
import { FilteredSocket } from './frames';
import { ConnectionSniffer, serverSettingsFrame, type Verdict } from './handoff';

/** A method as grpc-js' ServiceDefinition (from @berth/api's grpcService) describes it. */
export interface MethodDefinition<Req = any, Res = any> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize(bytes: Buffer): Req;
  responseSerialize(value: Res): Buffer;
}

export type ServiceDefinition = { readonly [name: string]: MethodDefinition };

/** The call a streaming handler gets: what it used of grpc-js' ServerDuplexStream. */
export class ServerStreamCall<Req = any, Res = any> extends Duplex {
  /** The request of a server-streaming call. */
  request: Req = undefined as Req;

  constructor(
    readonly call: Call,
    private readonly def: MethodDefinition<Req, Res>,
  ) {
    super({ objectMode: true, autoDestroy: false, emitClose: false });
    call.onCancel(() => this.emit('cancelled'));
    call.stream.once('close', () => this.emit('close'));
  }

  get cancelled(): boolean {
    return this.call.cancelled;
  }

  /** Metadata as grpc-js shows it: `get(key)` gives every value (Buffers for -bin keys). */
  get metadata(): { get(key: string): (string | Buffer)[] } {
    const headers = this.call.headers;
    return {
      get(key: string) {
        const v = headers[key.toLowerCase()];
        if (v === undefined) return [];
        const values = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(/,\s*/));
        return key.endsWith('-bin') ? values.map((s) => Buffer.from(s, 'base64')) : values;
      },
    };
  }

  getPath(): string {
    return this.def.path;
  }

  /** Starts delivering the client's messages as 'data' (client and bidi streams). */
  startReading(): void {
    this.call.readMessages(
      (bytes) => {
        let msg: Req;
        try {
          msg = this.def.requestDeserialize(bytes);
        } catch (err) {
          this.failWith(
            new StatusError(
              GrpcCode.INTERNAL,
              `grpc: error unmarshalling request: ${(err as Error).message}`,
            ),
          );
          return;
        }
        if (!this.push(msg)) this.call.stream.pause();
      },
      () => this.push(null),
      (err) => this.failWith(err),
    );
  }

  private failWith(err: StatusError): void {
    this.call.fail(err);
    this.emit('error', err);
  }

  override _read(): void {
    this.call.stream.resume();
  }

  override _write(msg: Res, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.call.open) {
      cb();
      return;
    }
    let ok: boolean;
    try {
      ok = this.call.sendMessage(this.def.responseSerialize(msg));
    } catch (err) {
      this.call.fail(err);
      cb();
      return;
    }
    if (ok) cb();
    else {
      const s = this.call.stream;
      const done = () => {
        s.off('drain', done);
        s.off('close', done);
        cb();
      };
      s.once('drain', done);
      s.once('close', done);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.call.finish();
    cb();
  }

  /** Ends the call with the status of err. */
  fail(err: unknown): void {
    this.call.fail(err);
  }
}

type UnaryImpl<Req, Res> = (ctx: Context, req: Req, call: Call) => Promise<Res> | Res;
type ServerStreamImpl<Req, Res> = (ctx: Context, req: Req, call: ServerStreamCall<Req, Res>) => Promise<void>;
type ClientStreamImpl<Req, Res> = (ctx: Context, call: ServerStreamCall<Req, never>) => Promise<Res>;
type BidiImpl<Req, Res> = (ctx: Context, call: ServerStreamCall<Req, Res>) => Promise<void>;
/** A handler on the raw call (request bytes in, encoded message parts out), for the hottest methods. */
export type RawHandler = (call: Call) => void;

export type Handler =
  | { readonly kind: 'unary'; readonly impl: UnaryImpl<any, any>; readonly opts: HandlerOptions }
  | {
      readonly kind: 'serverStream';
      readonly impl: ServerStreamImpl<any, any>;
      readonly opts: HandlerOptions;
    }
  | {
      readonly kind: 'clientStream';
      readonly impl: ClientStreamImpl<any, any>;
      readonly opts: HandlerOptions;
    }
  | { readonly kind: 'bidi'; readonly impl: BidiImpl<any, any>; readonly opts: HandlerOptions }
  | { readonly kind: 'raw'; readonly impl: RawHandler; readonly opts: HandlerOptions };

export const unary = <Req, Res>(impl: UnaryImpl<Req, Res>, opts: HandlerOptions = {}): Handler => ({
  kind: 'unary',
  impl,
  opts,
});
export const serverStream = <Req, Res>(
  impl: ServerStreamImpl<Req, Res>,
  opts: HandlerOptions = {},
): Handler => ({
  kind: 'serverStream',
  impl,
  opts,
});
export const clientStream = <Req, Res>(
  impl: ClientStreamImpl<Req, Res>,
  opts: HandlerOptions = {},
): Handler => ({
  kind: 'clientStream',
  impl,
  opts,
});
export const bidi = <Req, Res>(impl: BidiImpl<Req, Res>, opts: HandlerOptions = {}): Handler => ({
  kind: 'bidi',
  impl,
  opts,
});
export const raw = (impl: RawHandler, opts: HandlerOptions = {}): Handler => ({ kind: 'raw', impl, opts });

const isHandler = (x: unknown): x is Handler =>
  typeof x === 'object' &&
  x !== null &&
  typeof (x as Handler).kind === 'string' &&
  typeof (x as Handler).impl === 'function';

interface Route {
  def: MethodDefinition;
  handler: Handler;
  /** `<Service>/<Method>` for logs. */
  method: string;
}

export interface ServerOptions {
  /** Largest request message; grpc-go's 4 MiB by default (containerd sets 16 MiB). */
  maxRecvMessageSize?: number;
  /** Largest response message; unlimited by default. */
  maxSendMessageSize?: number;
  /** HTTP/2 stream and connection windows; 16 MiB by default (containerd's clients send 1 MiB messages). */
  windowSize?: number;
  log?: Log;
}

/** The part of Server a service registers itself with. */
export interface ServiceRegistrar {
  addService(def: ServiceDefinition, impl: { readonly [name: string]: Handler | undefined }): void;
}

/** How long a connection gets to close on its own after its session ended. */
const SOCKET_LINGER_MS = 1000;
/**
 * How long a new connection has to show its first request and its ACK of the server's
 * SETTINGS; one that does not (an idle client, a slow one) goes through the frame layer.
 */
const SNIFF_MS = 1000;
/**
 * A natively served session idle this long is probed with a PING. nghttp2 answers a client
 * error with GOAWAY and then neither reads nor writes, but Node keeps the session and its
 * socket open with no event to say so; a PING it never sends is how that shows.
 */
const IDLE_PROBE_MS = 3000;
/** How long a probe PING has to come back before the session is taken for dead. */
const PROBE_GRACE_MS = 1000;

/**
 * gRPC over HTTP/2 on unix sockets. Connections are accepted on our own net.Server and
 * go through the frame layer (frames.ts) before Node's HTTP/2 session sees them, so any
 * `:authority` is accepted, as containerd does.
 */
export class Server implements ServiceRegistrar {
  private readonly routes = new Map<string, Route>();
  private readonly services = new Set<string>();
  private readonly env: CallEnv;
  private readonly h2: http2.Http2Server;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly listeners: NetServer[] = [];
  private readonly log: Log | undefined;
  /** The streams of the connection being set up (see handleConnection). */
  private connecting: SessionStreams | undefined;
  private readonly streamsOf = new WeakMap<http2.ServerHttp2Session, SessionStreams>();
  /** The SETTINGS frame nghttp2 sends first, written at accept (handoff.ts). */
  private readonly settingsFrame: Buffer;
  /** Connections given to nghttp2 natively and through the frame layer, for tests and logs. */
  readonly connections = { native: 0, filtered: 0 };

  constructor(opts: ServerOptions = {}) {
    this.log = opts.log;
    this.env = {
      maxRecv: opts.maxRecvMessageSize ?? 4 << 20,
      maxSend: opts.maxSendMessageSize ?? Number.MAX_SAFE_INTEGER,
      log: opts.log,
    };
    const window = opts.windowSize ?? 16 << 20;
    const settings: http2.Settings = { initialWindowSize: window };
    this.settingsFrame = serverSettingsFrame(http2.getPackedSettings(settings));
    this.h2 = http2.createServer({
      settings,
      // nghttp2 counts buffered request data against this (in MB); flow control already bounds it.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    this.h2.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      if (this.connecting) this.streamsOf.set(session, this.connecting);
      else watchNative(session);
      session.once('close', () => this.sessions.delete(session));
      // A connection that broke HTTP/2 is gone for good: GOAWAY was sent, now free its socket.
      session.on('error', (err) => {
        this.log?.with({ error: err.message }).debug('HTTP/2 session error');
        session.destroy();
      });
      session.once('connect', () => {
        try {
          session.setLocalWindowSize(window);
        } catch {
          // a session already closing: nothing to widen
        }
      });
    });
    this.h2.on('sessionError', (_err, session) => session?.destroy());
    this.h2.on('stream', (stream, headers) => this.onStream(stream, headers));
  }

  /** Registers every method of a service; a method without a handler answers UNIMPLEMENTED. */
  addService(def: ServiceDefinition, impl: { readonly [name: string]: Handler | undefined }): void {
    for (const [name, method] of Object.entries(def)) {
      const handler = impl[name];
      const slash = method.path.lastIndexOf('/');
      const service = method.path.slice(1, slash);
      this.services.add(service);
      if (handler === undefined) continue;
      if (!isHandler(handler)) throw new TypeError(`${method.path}: not a handler made by @berth/grpc`);
      const short = `${service.slice(service.lastIndexOf('.') + 1)}/${name}`;
      this.routes.set(method.path, { def: method, handler, method: handler.opts.method ?? short });
    }
  }

  /** Serves one method by path with a raw handler (replacing what addService registered). */
  addRaw(path: string, impl: RawHandler, opts: HandlerOptions = {}): void {
    const existing = this.routes.get(path);
    const def = existing?.def ?? ({ path } as MethodDefinition);
    this.services.add(path.slice(1, path.lastIndexOf('/')));
    this.routes.set(path, {
      def,
      handler: raw(impl, opts),
      method: opts.method ?? existing?.method ?? path.slice(1),
    });
  }

  /** The gRPC paths served. */
  paths(): string[] {
    return [...this.routes.keys()];
  }

  /** The paths served without a stream object per call: unary methods and raw handlers. */
  leanPaths(): string[] {
    return [...this.routes]
      .filter(([, r]) => r.handler.kind === 'unary' || r.handler.kind === 'raw')
      .map(([p]) => p);
  }

  /** Listens on a unix socket path (the caller prepares the path and sets its mode). */
  listen(path: string): Promise<void> {
    const listener = createServer((socket) => this.handleConnection(socket));
    this.listeners.push(listener);
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(path, () => {
        listener.off('error', reject);
        resolve();
      });
    });
  }

  /**
   * Serves one accepted connection (what listen does for each): its start is read here
   * (handoff.ts), then the native socket goes to nghttp2 if its first request's
   * `:authority` is one nghttp2 takes, the frame layer otherwise.
   */
  handleConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const sniffer = new ConnectionSniffer();
    let timer: NodeJS.Timeout | undefined;
    const decide = (v: Verdict) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      if (socket.destroyed) return;
      socket.pause();
      if (v.bytes.length > 0) socket.unshift(v.bytes);
      if (v.path === 'native') this.serveNative(socket);
      else {
        this.log?.with({ authority: v.authority ?? '' }).debug('connection served through the frame layer');
        this.serveFiltered(socket, v.ackPending);
      }
    };
    const onData = (chunk: Buffer) => {
      const v = sniffer.push(chunk);
      if (v) decide(v);
    };
    // Nothing asked for before the client left: nothing to answer.
    const onEnd = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    timer = setTimeout(() => decide(sniffer.filter()), SNIFF_MS).unref();
    socket.once('close', () => clearTimeout(timer));
    socket.write(this.settingsFrame);
  }

  private serveNative(socket: Socket): void {
    this.connections.native++;
    this.h2.emit('connection', socket);
  }

  private serveFiltered(socket: Socket, dropSettingsAck: boolean): void {
    this.connections.filtered++;
    const streams = new SessionStreams();
    const filtered = new FilteredSocket(socket, {
      onConnectionError: (err) =>
        this.log?.with({ error: err.message }).debug('closing a connection that broke HTTP/2'),
      onReset: (id, code) => streams.reset(id, code),
      dropSettingsAck,
    });
    filtered.once('close', () => {
      if (!socket.destroyed) setTimeout(() => socket.destroy(), SOCKET_LINGER_MS).unref();
    });
    // The session is made, and 'session' emitted, within emit('connection').
    this.connecting = streams;
    try {
      this.h2.emit('connection', filtered);
    } finally {
      this.connecting = undefined;
    }
    socket.resume();
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const streams = this.streamsOf.get(stream.session as http2.ServerHttp2Session);
    const path = headers[':path'] ?? '';
    const type = headers['content-type'];
    if (typeof type !== 'string' || !type.startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const route = this.routes.get(path);
    let encoding: string | undefined;
    let timeout: number | undefined;
    let early: StatusError | undefined;
    try {
      if (!route) throw unknownMethod(path, this.services);
      encoding = requestEncoding(headers);
      const t = headers['grpc-timeout'];
      if (typeof t === 'string') {
        timeout = parseTimeout(t);
        if (timeout === undefined)
          throw new StatusError(GrpcCode.INTERNAL, `transport: malformed grpc-timeout: ${t}`);
      }
    } catch (err) {
      early = err as StatusError;
    }
    const opts = route?.handler.opts ?? {};
    const call = new Call(stream, headers, route?.method ?? path, this.env, opts, encoding, timeout);
    streams?.add(stream, call);
    if (early || !route) {
      call.end(early!.code, early!.details);
      stream.resume();
      return;
    }
    const log = opts.log ?? this.log;
    const started = log?.enabled('trace') ? performance.now() : undefined;
    if (started !== undefined) {
      stream.once('close', () =>
        log!
          .with({ method: route.method, ms: (performance.now() - started).toFixed(2), code: call.code })
          .trace('call'),
      );
    }
    this.run(call, route);
  }

  private run(call: Call, route: Route): void {
    const { def, handler } = route;
    const decode = (bytes: Buffer) => {
      try {
        return def.requestDeserialize(bytes);
      } catch (err) {
        throw new StatusError(
          GrpcCode.INTERNAL,
          `grpc: error unmarshalling request: ${(err as Error).message}`,
        );
      }
    };
    const settle = (p: Promise<void> | void, s?: ServerStreamCall) =>
      Promise.resolve(p).then(
        () => {
          if (s) s.end();
          else call.finish();
        },
        (err) => call.fail(err),
      );
    switch (handler.kind) {
      case 'raw':
        try {
          handler.impl(call);
        } catch (err) {
          call.fail(err);
        }
        return;
      case 'unary':
        call
          .request(decode)
          .then((req) => handler.impl(call.ctx, req, call))
          .then((res) => {
            if (!call.open) return;
            call.sendMessage(def.responseSerialize(res));
            call.finish();
          })
          .catch((err) => call.fail(err));
        return;
      case 'serverStream': {
        const s = new ServerStreamCall(call, def);
        call.request(decode).then(
          (req) => {
            s.request = req;
            return settle((async () => handler.impl(call.ctx, req, s))(), s);
          },
          (err) => call.fail(err),
        );
        return;
      }
      case 'clientStream': {
        const s = new ServerStreamCall(call, def);
        s.startReading();
        (async () => handler.impl(call.ctx, s as ServerStreamCall<any, never>))().then(
          (res) => {
            if (!call.open) return;
            call.sendMessage(def.responseSerialize(res));
            call.finish();
          },
          (err) => call.fail(err),
        );
        return;
      }
      case 'bidi': {
        const s = new ServerStreamCall(call, def);
        s.startReading();
        settle((async () => handler.impl(call.ctx, s))(), s);
        return;
      }
    }
  }

  /**
   * Stops accepting connections, lets calls in flight finish for up to graceMs (GOAWAY
   * tells clients to open no more streams), then closes every connection.
   */
  async shutdown(graceMs = 5000): Promise<void> {
    for (const l of this.listeners) l.close();
    const closed = [...this.sessions].map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(closed),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }
}

/**
 * The open streams of one connection by id, for the client's RST_STREAM frames the frame
 * layer takes out of nghttp2's sight: the server closes the stream itself with the
 * client's code, which cancels the call just as the reset would have.
 */
class SessionStreams {
  private readonly open = new Map<number, { stream: http2.ServerHttp2Stream; call: Call }>();
  /** Resets that came before nghttp2 handed their stream to us. */
  private readonly early = new Map<number, number>();
  private highest = 0;

  add(stream: http2.ServerHttp2Stream, call: Call): void {
    const id = stream.id!;
    if (id > this.highest) this.highest = id;
    const code = this.early.get(id);
    if (code !== undefined) {
      this.early.delete(id);
      call.clientReset();
      stream.close(code);
      return;
    }
    this.open.set(id, { stream, call });
    stream.once('close', () => this.open.delete(id));
  }

  reset(id: number, code: number): void {
    const open = this.open.get(id);
    if (open) {
      open.call.clientReset();
      open.stream.close(code);
    }
    // A stream nghttp2 has not handed over yet (its HEADERS are still on the way up).
    else if (id > this.highest && this.early.size < 1000) this.early.set(id, code);
  }
}

/** Ends a natively served session that nghttp2 stopped serving (see IDLE_PROBE_MS). */
function watchNative(session: http2.ServerHttp2Session): void {
  session.setTimeout(IDLE_PROBE_MS, () => {
    if (session.destroyed || session.closed) return;
    const dead = () => {
      session.destroy();
      session.socket?.destroy();
    };
    const timer = setTimeout(dead, PROBE_GRACE_MS).unref();
    let sent = false;
    try {
      sent = session.ping((err) => {
        clearTimeout(timer);
        if (err) dead();
      });
    } catch {
      // a session past closing: nothing to probe
    }
    if (!sent) {
      clearTimeout(timer);
      dead();
    }
  });
}

/** grpc-go's words for a path it does not serve. */
function unknownMethod(path: string, services: ReadonlySet<string>): StatusError {
  const slash = path.lastIndexOf('/');
  if (!path.startsWith('/') || slash <= 0) {
    return new StatusError(GrpcCode.UNIMPLEMENTED, `malformed method name: "${path}"`);
  }
  const service = path.slice(1, slash);
  const method = path.slice(slash + 1);
  if (!services.has(service)) return new StatusError(GrpcCode.UNIMPLEMENTED, `unknown service ${service}`);
  return new StatusError(GrpcCode.UNIMPLEMENTED, `unknown method ${method} for service ${service}`);
}
