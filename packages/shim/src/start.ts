/**
 * `containerd-shim-berth-v1 start`: find or launch the shim that serves this container's
 * group and print its address. Runs once per container start, so it loads nothing but
 * Node's own modules.
 *
 * A running shim of the group is asked to hold a place for the container (Connect); else
 * a new socket is bound and a detached shim process (own session and process group) is
 * spawned with it as fd 3, exactly as containerd's shims hand over their socket.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { addressPath, groupingFromEnv, groupKey, socketAddress, socketDir, unlinkSocket } from './address';
import { type ShimFlags, serveArgs } from './flags';
import { reserve } from './reserve';
import { bytesField, readFields, stringField } from './wire';

export interface StartOptions {
  /** The script a new shim process runs (this binary). */
  entry: string;
  env?: NodeJS.ProcessEnv;
  /** The runtime options Any containerd writes on stdin, if any. */
  options?: Buffer;
}

/** Writes a file by rename so a reader never sees half of it (containerd's WriteAddress). */
export function writeAtomic(path: string, data: string): void {
  const tmp = join(dirname(path), `.${path.slice(dirname(path).length + 1)}`);
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

function readAnnotations(bundle: string): Record<string, string> | undefined {
  try {
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
      annotations?: Record<string, string>;
    };
    return spec.annotations;
  } catch {
    return undefined;
  }
}

/**
 * Binds a listening socket at `path`, failing with EEXIST when the path is taken. Node
 * unlinks a socket's path when its server closes, even at process exit; the server is
 * therefore bound at a temporary name, and `path` is a hard link to it (link(2) also
 * makes claiming the path atomic between concurrent starts).
 */
function listen(path: string): Promise<net.Server> {
  const tmp = `${path}.${process.pid}.tmp`;
  unlinkSocket(tmp);
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(tmp, () => {
      server.off('error', reject);
      try {
        chmodSync(tmp, 0o600);
        linkSync(tmp, path);
      } catch (err) {
        server.close();
        reject(err);
        return;
      }
      unlinkSocket(tmp);
      resolve(server);
    });
  });
}

const SHIM_CGROUP_FIELD: Record<string, number> = {
  'containerd.runc.v1.Options': 3,
  'io.containerd.runc.v1.Options': 3,
  'containerd.linux.runc.CreateOptions': 9,
};

/**
 * The shim cgroup named in the options Any on stdin: containerd.runc.v1.Options field 3,
 * or containerd.linux.runc.CreateOptions field 9 (what containerd's client sends to
 * runtimes not named io.containerd.runc.*); RuncOptions and unknown types name none.
 */
export function shimCgroupOf(options: Buffer | undefined): string {
  if (options === undefined || options.length === 0) return '';
  const any = readFields(options);
  const url = bytesField(any, 1)?.toString() ?? '';
  const typeName = url.slice(url.lastIndexOf('/') + 1);
  const field = SHIM_CGROUP_FIELD[typeName];
  const value = bytesField(any, 2);
  return value === undefined || field === undefined ? '' : stringField(readFields(value), field);
}

function joinCgroup(pid: number, cgroup: string): void {
  const unified = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const roots = unified
    ? ['/sys/fs/cgroup']
    : ['cpu', 'cpuacct', 'memory', 'pids', 'blkio', 'devices', 'freezer', 'cpuset', 'systemd'].map(
        (c) => `/sys/fs/cgroup/${c}`,
      );
  let joined = 0;
  for (const root of roots) {
    const procs = join(root, cgroup, 'cgroup.procs');
    if (!existsSync(procs)) continue;
    writeFileSync(procs, String(pid));
    joined++;
  }
  if (joined === 0) throw new Error(`failed to load cgroup ${cgroup}: no such cgroup`);
}

/** The shim's oom_score_adj is its daemon's plus one: under memory pressure the shim goes first. */
function adjustOomScore(pid: number): void {
  try {
    const parent = Number(readFileSync(`/proc/${process.ppid}/oom_score_adj`, 'utf8').trim());
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(Math.min(1000, parent + 1)));
  } catch {
    // best effort, as containerd treats it on machines without the file
  }
}

/** Opens the bundle's `log` FIFO for the shim's stderr when the daemon is reading it. */
function openLogFifo(bundle: string): number | undefined {
  const path = join(bundle, 'log');
  try {
    // bigint: a plain stat of a FIFO breaks later require()s (@berth/api special-files).
    if (!statSync(path, { bigint: true }).isFIFO()) return undefined;
    return openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
}

/** Runs `start`; returns the address to print. */
export async function start(flags: ShimFlags, opts: StartOptions): Promise<string> {
  const env = opts.env ?? process.env;
  if (flags.namespace === '') throw new Error('shim namespace cannot be empty');
  if (flags.id === '') throw new Error('shim id cannot be empty');
  const bundle = flags.bundle || process.cwd();
  const group = groupKey(flags.id, readAnnotations(bundle), groupingFromEnv(env));
  const address = socketAddress(flags.address, flags.namespace, group, socketDir(env));
  const path = addressPath(address);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });

  for (let attempt = 0; attempt < 5; attempt++) {
    const answer = await reserve(path, flags.namespace, flags.id);
    if (answer === 'ok') {
      writeAtomic(join(bundle, 'address'), address);
      return address;
    }
    // Nobody listens there: a shim died and left its socket file.
    if (answer === 'unreachable') unlinkSocket(path);
    let server: net.Server;
    try {
      server = await listen(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // another start won the race: join it
      throw err;
    }
    writeAtomic(join(bundle, 'address'), address);
    launch(server, path, flags, bundle, opts, env);
    return address;
  }
  throw new Error(`create new shim socket ${path}: taken by a shim that does not answer`);
}

function launch(
  server: net.Server,
  path: string,
  flags: ShimFlags,
  bundle: string,
  opts: StartOptions,
  env: NodeJS.ProcessEnv,
): void {
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  const logFd = openLogFifo(bundle);
  try {
    const child = spawn(process.execPath, [...process.execArgv, opts.entry, ...serveArgs(flags)], {
      cwd: bundle,
      detached: true,
      stdio: ['ignore', 'ignore', logFd ?? 'ignore', fd],
      env: { ...env, BERTH_SHIM_SOCKET: path },
    });
    child.unref();
    // The listening socket now lives on in the child. This process lets go of its copy at
    // once: left open, its event loop would accept (and strand) the connections of other
    // `start`s meant for the child. The path was unlinked already, so closing removes nothing.
    server.close();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`spawn shim: ${process.execPath}: failed`);
    const cgroup = shimCgroupOf(opts.options);
    if (cgroup !== '') {
      try {
        joinCgroup(pid, cgroup);
      } catch (err) {
        process.kill(pid, 'SIGKILL');
        unlinkSocket(path);
        throw err;
      }
    }
    adjustOomScore(pid);
  } finally {
    if (logFd !== undefined) closeSync(logFd);
  }
}
