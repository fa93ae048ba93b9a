/**
 * `containerd-shim-berth-v1 delete`: the daemon's cleanup of a bundle whose shim is gone.
 * containerd runs it after every shim disconnect, so it sits on the path of every
 * `ctr run --rm`: it loads no protobuf or gRPC library and touches @berth/sys only when
 * something is still mounted. Force-deletes the container in the OCI runtime, unmounts the
 * rootfs, removes a socket nobody serves any more, and returns containerd's answer for a
 * killed task (exit 128+SIGKILL, now).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { addressPath, unlinkSocket } from './address';
import { DEFAULT_RUNTIME_ROOT } from './defaults';
import type { ShimFlags } from './flags';
import type { Logger } from './log';
import { type Timestamp, timestampNow } from './time';
import { lengthField, varint } from './wire';

const SIGKILL = 9;

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b;
    });
    child.on('error', (err) => resolve({ code: -1, stderr: err.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

/** Whether anything is mounted at dir or below it (mountinfo field 5; spaces come escaped as \040). */
export function mountedUnder(dir: string, mountinfo: string): boolean {
  for (const line of mountinfo.split('\n')) {
    const point = line.split(' ')[4]?.replace(/\\040/g, ' ');
    if (point !== undefined && (point === dir || point.startsWith(`${dir}/`))) return true;
  }
  return false;
}

export interface CleanupResult {
  pid: number;
  exitStatus: number;
  exitedAt: Timestamp;
}

export async function cleanup(
  flags: ShimFlags,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CleanupResult> {
  if (flags.namespace === '') throw new Error('shim namespace cannot be empty');
  if (flags.id === '') throw new Error('shim id cannot be empty');
  const bundle = flags.bundle || process.cwd();
  const options = readJson(join(bundle, 'options.json')) ?? {};
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  let binary = str(options.binary_name) || str(options.binaryName);
  if (binary === '') {
    try {
      binary = readFileSync(join(bundle, 'runtime'), 'utf8').trim();
    } catch {
      // no runtime file: the default
    }
  }
  binary ||= env.BERTH_SHIM_RUNTIME || 'runc';
  const root = join(
    str(options.root) || env.BERTH_SHIM_RUNTIME_ROOT || DEFAULT_RUNTIME_ROOT,
    flags.namespace,
  );
  const args = ['--root', root, '--log', join(bundle, 'log.json'), '--log-format', 'json'];
  if (options.systemd_cgroup === true || options.systemdCgroup === true) args.push('--systemd-cgroup');
  // Usually the shim deleted it already: then the runtime holds no state and need not run.
  if (existsSync(join(root, flags.id))) {
    const deleted = await run(binary, [...args, 'delete', '--force', flags.id]);
    if (deleted.code !== 0 && !/does not exist|not found/i.test(deleted.stderr)) {
      log.warn('failed to remove runc container', {
        error: deleted.stderr.trim() || `exit status ${deleted.code}`,
      });
    }
  }
  const rootfs = join(bundle, 'rootfs');
  if (mountedUnder(rootfs, readFileSync('/proc/self/mountinfo', 'utf8'))) {
    try {
      const { unmountAll } = require('@berth/sys') as typeof import('@berth/sys');
      await unmountAll(rootfs);
    } catch (err) {
      log.warn('failed to cleanup rootfs mount', { error: err });
    }
  }
  let pid = 0;
  try {
    pid = Number.parseInt(readFileSync(join(bundle, 'init.pid'), 'utf8').trim(), 10) || 0;
  } catch (err) {
    log.warn('failed to read init pid file', { error: err });
  }
  try {
    const socket = addressPath(readFileSync(join(bundle, 'address'), 'utf8').trim());
    if (socket !== '' && !socket.startsWith('\0') && !(await canConnect(socket))) unlinkSocket(socket);
  } catch {
    // no address file: nothing to remove
  }
  return { pid, exitStatus: 128 + SIGKILL, exitedAt: timestampNow() };
}

/** containerd.task.v2.DeleteResponse {pid = 1, exit_status = 2, exited_at = 3 {seconds = 1, nanos = 2}}. */
export function encodeDeleteResponse(result: CleanupResult): Buffer {
  const varintField = (n: number, v: number): Buffer =>
    v === 0 ? Buffer.alloc(0) : Buffer.concat([varint(n << 3), varint(v)]);
  const ts = Buffer.concat([varintField(1, result.exitedAt.seconds), varintField(2, result.exitedAt.nanos)]);
  return Buffer.concat([varintField(1, result.pid), varintField(2, result.exitStatus), lengthField(3, ts)]);
}
