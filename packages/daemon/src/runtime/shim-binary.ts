import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  type AnyValue,
  DeadlineExceededError,
  decodeMessage,
  encodeMessage,
  FailedPreconditionError,
  fromTimestamp,
  preciseNow,
  UnknownError,
  type wire,
} from '@berth/api';
import { DEFAULT_SHIM_IDLE_MS } from './berth-shim';
import type { Bundle } from './bundle';

/** How berthd is reached by the shims it starts (containerd's CommandConfig). */
export interface ShimCommandConfig {
  /** The shim binary. */
  binary: string;
  /** berthd's gRPC socket (`-address`). */
  address: string;
  /** berthd's ttrpc socket, where shims forward events (env TTRPC_ADDRESS). */
  ttrpcAddress: string;
  /** `-publish-binary`: what an old shim would exec to publish events ('' when none). */
  publishBinary: string;
  /** Pass `-debug` to the shim. */
  debug?: boolean;
}

/** A process exit as the shim reports it. */
export interface Exit {
  pid: number;
  exitStatus: number;
  exitedAt: Date;
}

interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs the shim with containerd's command line: `-namespace ns -address a
 * -publish-binary b <args>`, in `cwd`, with TTRPC_ADDRESS and GOMAXPROCS=2 (containerd's
 * Go shims expect it) and `stdin` as its input. The shim runs in a session of its own,
 * so a signal to berthd's process group never reaches a container's shim.
 */
function runShim(
  config: ShimCommandConfig,
  namespace: string,
  args: string[],
  cwd: string | undefined,
  stdin: Buffer | undefined,
  timeoutMs: number,
): Promise<CommandResult> {
  const argv = ['-namespace', namespace, '-address', config.address, '-publish-binary', config.publishBinary];
  if (config.debug) argv.push('-debug');
  argv.push(...args);
  return new Promise((resolve, reject) => {
    const child = spawn(config.binary, argv, {
      cwd,
      env: {
        ...process.env,
        GOMAXPROCS: '2',
        TTRPC_ADDRESS: config.ttrpcAddress,
        // berth's shim lingers this long after its last task, so the next one finds it warm.
        BERTH_SHIM_IDLE_MS: process.env.BERTH_SHIM_IDLE_MS ?? String(DEFAULT_SHIM_IDLE_MS),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    let err = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < 64 * 1024) err += b.toString();
    });
    child.stdin.on('error', () => {}); // a shim that never reads its options
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new FailedPreconditionError(`shim ${config.binary}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new DeadlineExceededError(`shim ${config.binary} ${args.at(-1)}: no answer after ${timeoutMs}ms`),
        );
        return;
      }
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.end(stdin ?? Buffer.alloc(0));
  });
}

function failure(what: string, r: CommandResult): UnknownError {
  const status = r.signal ? `signal: ${r.signal}` : `exit status ${r.code}`;
  const output = `${r.stdout.toString()}${r.stderr}`.trim();
  return new UnknownError(`${what}: ${output ? `${output}: ` : ''}${status}`);
}

/**
 * `<shim> ... -id <id> start` in the bundle: the shim starts (or finds, for a group) the
 * process that serves the task API and prints that socket's address. The runtime options
 * travel on stdin as a protobuf Any, as containerd sends them.
 */
export async function shimStart(
  config: ShimCommandConfig,
  bundle: Bundle,
  options: AnyValue | undefined,
  timeoutMs = 30_000,
): Promise<string> {
  const stdin = options?.typeUrl
    ? encodeMessage('google.protobuf.Any', { typeUrl: options.typeUrl, value: options.value })
    : undefined;
  const r = await runShim(
    config,
    bundle.namespace,
    ['-id', bundle.id, 'start'],
    bundle.path,
    stdin,
    timeoutMs,
  );
  if (r.code !== 0) throw failure(`start shim ${config.binary} for ${bundle.id}`, r);
  const address = r.stdout.toString().trim();
  if (address === '') throw failure(`start shim ${config.binary} for ${bundle.id}: printed no address`, r);
  return address;
}

/**
 * `<shim> ... -id <id> -bundle <path> delete`: cleans up after a shim that is gone (kills
 * and deletes the container with the OCI runtime, unmounts its rootfs). Prints a
 * DeleteResponse on stdout. `warn` receives what the shim wrote on stderr.
 */
export async function shimDelete(
  config: ShimCommandConfig,
  bundle: Bundle,
  warn: (msg: string) => void,
  timeoutMs = 10_000,
): Promise<Exit> {
  // The runc shim finds the bundle from its working directory; it may be gone already.
  const cwd = existsSync(bundle.path) ? bundle.path : undefined;
  const r = await runShim(
    config,
    bundle.namespace,
    ['-id', bundle.id, '-bundle', bundle.path, 'delete'],
    cwd,
    undefined,
    timeoutMs,
  );
  if (r.code !== 0) throw failure(`delete shim ${config.binary} for ${bundle.id}`, r);
  if (r.stderr.trim() !== '') warn(r.stderr.trim());
  const res = decodeMessage<wire.shim.DeleteResponse>('containerd.task.v2.DeleteResponse', r.stdout);
  return {
    pid: res.pid,
    exitStatus: res.exitStatus,
    exitedAt: res.exitedAt ? fromTimestamp(res.exitedAt) : preciseNow(),
  };
}
