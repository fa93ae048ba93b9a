import { chmodSync, chownSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, lstatQuiet } from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import { type Logger, nullLogger } from '../log';
import { installFastPaths, type RawHandler, rawGrpcUnary, rawUnary } from './fast-path';
import { unaryImplementations } from './handlers';

/** What a gRPC plugin's instance offers: it adds its handlers to the daemon's server. */
export interface GrpcService {
  register(server: grpc.Server): void;
  /**
   * Optional: methods (by gRPC path) also served straight from HTTP/2 for speed. The
   * grpc-js handler registered for the same method stays the fallback.
   */
  fastPaths?(): ReadonlyMap<string, RawHandler>;
}

export const isGrpcService = (x: unknown): x is GrpcService =>
  typeof x === 'object' && x !== null && typeof (x as GrpcService).register === 'function';

/** The socket path of an address given as a path or as `unix://<path>`. */
export function socketPath(address: string): string {
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  if (path === '') throw new InvalidArgumentError('grpc address cannot be empty');
  if (address.includes('://') && !address.startsWith('unix://')) {
    throw new InvalidArgumentError(`grpc address "${address}": only unix sockets are supported`);
  }
  return path;
}

/** Resolves true when something accepts connections on the socket. */
function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket's place ready: the parent directory (0711, as containerd), a stale
 * socket from a dead daemon removed; a live daemon on it, or a non-socket file, refused.
 */
export async function prepareSocket(path: string, log: Logger = nullLogger): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  // lstatQuiet: a plain stat of a socket breaks later require()s (@berth/api special-files).
  const st = lstatQuiet(path);
  if (st === undefined) return;
  if (!st.isSocket()) throw new FailedPreconditionError(`socket ${path}: exists and is not a socket`);
  if (await isListening(path)) {
    throw new FailedPreconditionError(`socket ${path}: another daemon is already serving on it`);
  }
  log.with({ address: path }).info('removing stale socket');
  unlinkSync(path);
}

export interface GrpcServerOptions {
  maxRecvMessageSize: number;
  maxSendMessageSize: number;
  log?: Logger;
}

/** HTTP/2 windows large enough that a 1 MiB message does not wait on window updates. */
const WINDOW = 16 << 20;

/** grpc-js's server, on a unix socket, with containerd's message limits and clean shutdown. */
export class GrpcServer {
  readonly server: grpc.Server;
  private path: string | undefined;
  private readonly log: Logger;
  private readonly routes = new Map<string, RawHandler>();
  /** Methods served straight from HTTP/2 (empty until listen, or when grpc-js internals differ). */
  fastPaths: string[] = [];
  private readonly maxRecvMessageSize: number;
  private readonly maxSendMessageSize: number;

  constructor(opts: GrpcServerOptions) {
    this.maxRecvMessageSize = opts.maxRecvMessageSize;
    this.maxSendMessageSize = opts.maxSendMessageSize;
    this.log = opts.log ?? nullLogger;
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': opts.maxRecvMessageSize,
      'grpc.max_send_message_length': opts.maxSendMessageSize,
    });
    tuneWindows(this.server);
  }

  register(service: GrpcService): void {
    service.register(this.withUnaryFastPaths());
    for (const [path, handler] of service.fastPaths?.() ?? []) this.routes.set(path, handler);
  }

  /**
   * The server as services see it: addService also routes each unary method to the HTTP/2
   * fast path, which runs the same implementation (grpc-js stays the fallback for calls
   * the fast path does not take: deadlines, compression).
   */
  private withUnaryFastPaths(): grpc.Server {
    const server = this.server;
    const addService = (def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): void => {
      server.addService(def, impl);
      for (const [name, method] of Object.entries(def)) {
        if (method.requestStream || method.responseStream) continue;
        const handler = impl[name] as grpc.handleUnaryCall<any, any> | undefined;
        if (typeof handler !== 'function') continue;
        const found = unaryImplementations.get(handler);
        this.routes.set(
          method.path,
          found
            ? rawUnary(method, found.impl, found.opts, this.maxSendMessageSize)
            : rawGrpcUnary(method, handler, this.maxSendMessageSize),
        );
      }
    };
    return new Proxy(server, {
      get(target, prop) {
        if (prop === 'addService') return addService;
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /** Binds the socket (mode 0660, owned by uid:gid when given) and starts serving. */
  async listen(address: string, uid = 0, gid = 0): Promise<string> {
    const path = socketPath(address);
    await prepareSocket(path, this.log);
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      );
    });
    this.path = path;
    widenConnectionWindows(this.server);
    if (this.routes.size > 0) {
      const opts = { maxRecvMessageSize: this.maxRecvMessageSize, log: this.log };
      if (installFastPaths(this.server, this.routes, opts)) this.fastPaths = [...this.routes.keys()];
      else this.log.warn('grpc-js internals changed: serving every method through grpc-js');
    }
    chmodSync(path, 0o660);
    if (uid !== 0 || gid !== 0) chownSync(path, uid, gid);
    return path;
  }

  /**
   * Stops accepting calls, lets in-flight ones finish for up to graceMs, then cancels the
   * rest; removes the socket file.
   */
  async shutdown(graceMs = 5000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.with({ graceMs }).warn('calls still in flight at shutdown, cancelling them');
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.path) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone: the listener removes it on close
      }
    }
  }
}

/**
 * Node's HTTP/2 defaults (64 KiB stream and connection windows) make bulk transfers wait
 * on window updates; containerd's clients send 1 MiB messages. grpc-js reads its HTTP/2
 * settings from this field when it creates the listener, so raise the windows there.
 */
function tuneWindows(server: grpc.Server): void {
  const s = server as unknown as { commonServerOptions?: { settings?: Record<string, unknown> } };
  if (!s.commonServerOptions) return;
  s.commonServerOptions.settings = { ...s.commonServerOptions.settings, initialWindowSize: WINDOW };
}

/** The connection-level window is per session: widen it as each client connects. */
function widenConnectionWindows(server: grpc.Server): void {
  const servers = (server as unknown as { http2Servers?: Map<NodeJS.EventEmitter, unknown> }).http2Servers;
  for (const h2 of servers?.keys() ?? []) {
    h2.on('session', (session: { setLocalWindowSize?(n: number): void }) => {
      try {
        session.setLocalWindowSize?.(WINDOW);
      } catch {
        // a session already closing: nothing to widen
      }
    });
  }
}
