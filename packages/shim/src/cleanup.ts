/**
 * `containerd-shim-berth-v1 delete`: the daemon's cleanup of a bundle whose shim is gone.
 * Force-deletes the container in the OCI runtime, unmounts the rootfs, removes a socket
 * nobody serves any more, and prints a DeleteResponse (exit 128+SIGKILL, now) on stdout.
 */
import { readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { encodeMessage } from '@berth/api';
import { unmountAll } from '@berth/sys';
import { addressPath } from './address';
import type { ShimFlags } from './flags';
import type { Logger } from './log';
import { Reaper } from './reaper';
import { Runc } from './runc';
import { DEFAULT_RUNTIME_ROOT } from './serve';
import { timestampNow } from './time';

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

export interface CleanupResult {
  pid: number;
  exitStatus: number;
  exitedAt: { seconds: number; nanos: number };
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
  const root = str(options.root) || env.BERTH_SHIM_RUNTIME_ROOT || DEFAULT_RUNTIME_ROOT;
  const runc = new Runc(new Reaper(), {
    binary: binary || env.BERTH_SHIM_RUNTIME || 'runc',
    root: join(root, flags.namespace),
    log: join(bundle, 'log.json'),
    systemdCgroup: options.systemd_cgroup === true || options.systemdCgroup === true,
  });
  try {
    await runc.delete(flags.id, true);
  } catch (err) {
    log.warn('failed to remove runc container', { error: err });
  }
  try {
    await unmountAll(join(bundle, 'rootfs'));
  } catch (err) {
    log.warn('failed to cleanup rootfs mount', { error: err });
  }
  let pid = 0;
  try {
    pid = Number.parseInt(readFileSync(join(bundle, 'init.pid'), 'utf8').trim(), 10) || 0;
  } catch (err) {
    log.warn('failed to read init pid file', { error: err });
  }
  try {
    const socket = addressPath(readFileSync(join(bundle, 'address'), 'utf8').trim());
    if (socket !== '' && !socket.startsWith('\0') && !(await canConnect(socket)))
      rmSync(socket, { force: true });
  } catch {
    // no address file: nothing to remove
  }
  return { pid, exitStatus: 128 + SIGKILL, exitedAt: timestampNow() };
}

/** The DeleteResponse bytes `delete` prints, as the daemon decodes them. */
export function encodeDeleteResponse(result: CleanupResult): Buffer {
  return encodeMessage('containerd.task.v2.DeleteResponse', result);
}
