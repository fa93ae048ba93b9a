import { createHash } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Where shim sockets live unless BERTH_SHIM_SOCKET_DIR says otherwise (containerd: /run/containerd/s). */
export const DEFAULT_SOCKET_DIR = '/run/berth/s';

/**
 * Annotations that put containers into one shim, first match wins: ours and the runc
 * shim's. The CRI's pod sandbox id is not one: Kubernetes pods share their namespace's shim
 * like any other containers (a process per pod would cost each pod a Node.js heap); a pod
 * that wants its own carries `io.containerd.berth.v1.group` (the CRI passes it on from the
 * pod's annotations when the runtime's `pod_annotations` lists it).
 */
export const GROUP_ANNOTATIONS = ['io.containerd.berth.v1.group', 'io.containerd.runc.v2.group'] as const;

/**
 * How containers without a group annotation share shims: `namespace` (the default: one
 * shim per daemon and namespace, the memory saver) or `container` (one shim each, as
 * containerd's runc shim does).
 */
export type Grouping = 'namespace' | 'container';

export function groupingFromEnv(env: NodeJS.ProcessEnv): Grouping {
  return env.BERTH_SHIM_GROUPING === 'container' ? 'container' : 'namespace';
}

/** The key of the shim that serves a container. */
export function groupKey(
  id: string,
  annotations: Readonly<Record<string, string>> | undefined,
  grouping: Grouping,
): string {
  for (const name of GROUP_ANNOTATIONS) {
    const value = annotations?.[name];
    if (typeof value === 'string' && value !== '') return `group:${value}`;
  }
  return grouping === 'container' ? `container:${id}` : 'namespace';
}

/**
 * The shim socket for a daemon address, namespace and group: a hash, so any length of
 * input fits a unix socket path, and two daemons never share a shim.
 */
export function socketAddress(daemonAddress: string, namespace: string, group: string, dir: string): string {
  const digest = createHash('sha256').update(`${daemonAddress}\0${namespace}\0${group}`).digest('hex');
  return `unix://${join(dir, digest)}`;
}

export function socketDir(env: NodeJS.ProcessEnv): string {
  return env.BERTH_SHIM_SOCKET_DIR || DEFAULT_SOCKET_DIR;
}

/** The path of a `unix://` address (bare paths are returned as they are). */
export function addressPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/**
 * Removes a socket file; a missing one is fine. unlink, not fs.rm: rm stats the socket
 * first, and a plain stat of a socket breaks later require()s (see @berth/api
 * special-files; `start` stays light and does not load @berth/api).
 */
export function unlinkSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
