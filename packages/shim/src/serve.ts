/**
 * The long-running shim: a child subreaper serving the task API on the listening socket
 * `start` handed over as fd 3 (or on -socket), until Shutdown leaves it with nothing to do.
 */
import { closeSync } from 'node:fs';
import { dup, setChildSubreaper } from '@berth/sys';
import { TtrpcServer } from '@berth/ttrpc';
import { addressPath, unlinkSocket } from './address';
import { DEFAULT_RUNTIME_ROOT } from './defaults';
import type { ShimFlags } from './flags';
import { createLogger, type Logger } from './log';
import { Publisher } from './publisher';
import { Reaper } from './reaper';
import { LOG_SERVICE, TASK_SERVICE, TaskService } from './service';

export { DEFAULT_RUNTIME_ROOT };

export interface RunningShim {
  service: TaskService;
  server: TtrpcServer;
  reaper: Reaper;
  log: Logger;
  /** Resolves once the shim has shut down (its socket closed, its events sent). */
  done: Promise<void>;
  /** Stops serving: containers keep running, their exits are no longer collected. */
  stop(): Promise<void>;
}

function numberEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

export async function serve(flags: ShimFlags, env: NodeJS.ProcessEnv = process.env): Promise<RunningShim> {
  const log = createLogger((line) => process.stderr.write(line), flags.debug, {
    runtime: 'io.containerd.berth.v1',
    pid: process.pid,
    namespace: flags.namespace,
  });
  setChildSubreaper();
  const reaper = new Reaper();
  reaper.install();
  const publisher = new Publisher(env.TTRPC_ADDRESS, log);
  // The socket path to give up when shutting down: -socket, or what `start` bound for us.
  const socketFile = flags.socket
    ? addressPath(flags.socket)
    : env.BERTH_SHIM_SOCKET
      ? addressPath(env.BERTH_SHIM_SOCKET)
      : '';
  const server = new TtrpcServer({ onError: (err) => log.warn('ttrpc server', { error: err }) });

  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    // Unlinked at once, so a `start` for the same group binds a new shim instead of reaching this one.
    if (socketFile !== '') unlinkSocket(socketFile);
    stopping ??= new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => server.close({ timeoutMs: 2000 }))
      .then(() => publisher.drain(5000))
      .then(() => publisher.close())
      .finally(() => {
        reaper.uninstall();
        log.info('shim exited');
        resolveDone();
      });
    return stopping;
  };

  const service = new TaskService({
    namespace: flags.namespace,
    reaper,
    events: publisher,
    log,
    runtime: {
      binary: env.BERTH_SHIM_RUNTIME || 'runc',
      root: env.BERTH_SHIM_RUNTIME_ROOT || DEFAULT_RUNTIME_ROOT,
    },
    onShutdown: () => void stop(),
    idleMs: numberEnv(env, 'BERTH_SHIM_IDLE_MS', 0),
    unusedMs: numberEnv(env, 'BERTH_SHIM_UNUSED_MS', 60_000),
  });
  server.register(TASK_SERVICE, service.handlers());
  server.register(LOG_SERVICE, service.logHandlers());
  if (flags.socket) {
    await server.listen(flags.socket);
  } else {
    // fd 3 arrives without close-on-exec; a copy with it keeps the socket out of runc and containers.
    const fd = dup(3);
    closeSync(3);
    await server.listenFd(fd);
  }
  // The bundle we were started in may be deleted long before this shim exits.
  process.chdir('/');
  log.info('serving', { socket: socketFile || 'fd 3' });
  return { service, server, reaper, log, done, stop };
}

/** The shim process: serve, exit when done; SIGTERM/SIGINT stop serving (containers keep running). */
export async function runServe(flags: ShimFlags): Promise<void> {
  process.stderr.on('error', () => {});
  process.stdout.on('error', () => {});
  const shim = await serve(flags);
  process.on('unhandledRejection', (err) => shim.log.error('unhandled rejection', { error: err }));
  process.on('uncaughtException', (err) =>
    shim.log.error('uncaught exception', { error: err, stack: err.stack }),
  );
  const onSignal = (): void => void shim.stop();
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await shim.done;
  process.exit(0);
}
