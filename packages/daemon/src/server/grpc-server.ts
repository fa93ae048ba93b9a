import { chmodSync, chownSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, lstatQuiet } from '@berth/api';
import { HealthService, type RawHandler, Server, type ServiceRegistrar } from '@berth/grpc';
import { type Logger, nullLogger } from '../log';

export type { ServiceRegistrar };

/** What a gRPC plugin's instance offers: it adds its handlers to the daemon's server. */
export interface GrpcService {
  register(server: ServiceRegistrar): void;
  /**
   * Optional: methods (by gRPC path) served by a raw handler on the call's HTTP/2 stream
   * (request bytes in, encoded message parts out), replacing the registered handler.
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

/**
 * berthd's gRPC server (@berth/grpc) on a unix socket, with containerd's message limits,
 * grpc.health.v1.Health, and clean shutdown.
 */
export class GrpcServer {
  readonly server: Server;
  readonly health = new HealthService();
  private path: string | undefined;
  private readonly log: Logger;
  /** Methods served on the lean path: every unary method and each raw handler. */
  fastPaths: string[] = [];

  constructor(opts: GrpcServerOptions) {
    this.log = opts.log ?? nullLogger;
    this.server = new Server({
      maxRecvMessageSize: opts.maxRecvMessageSize,
      maxSendMessageSize: opts.maxSendMessageSize,
      log: this.log,
    });
    this.health.register(this.server);
  }

  register(service: GrpcService): void {
    service.register(this.server);
    for (const [path, handler] of service.fastPaths?.() ?? []) this.server.addRaw(path, handler);
  }

  /** Binds the socket (mode 0660, owned by uid:gid when given) and starts serving. */
  async listen(address: string, uid = 0, gid = 0): Promise<string> {
    const path = socketPath(address);
    await prepareSocket(path, this.log);
    await this.server.listen(path);
    this.path = path;
    this.fastPaths = this.server.leanPaths();
    chmodSync(path, 0o660);
    if (uid !== 0 || gid !== 0) chownSync(path, uid, gid);
    return path;
  }

  /** Health says SERVING for the server as a whole ("") or NOT_SERVING. */
  setServing(serving: boolean): void {
    this.health.setStatus('', serving ? 'SERVING' : 'NOT_SERVING');
  }

  /**
   * Stops accepting calls, lets in-flight ones finish for up to graceMs, then cancels the
   * rest; removes the socket file.
   */
  async shutdown(graceMs = 5000): Promise<void> {
    this.setServing(false);
    const started = Date.now();
    await this.server.shutdown(graceMs);
    if (Date.now() - started >= graceMs && graceMs > 0) {
      this.log.with({ graceMs }).warn('calls still in flight at shutdown, cancelled them');
    }
    if (this.path) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone: the listener removes it on close
      }
    }
  }
}
