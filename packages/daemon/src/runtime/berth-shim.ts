import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';

/**
 * What berthd knows of its own shim (containerd-shim-berth-v1) to skip the `start` binary
 * when the shim of a container's group already runs: where that shim listens. This is the
 * shim's own rule (packages/shim/src/address.ts), restated so berthd does not load the
 * shim's code; a unit test holds the two together.
 */

export const BERTH_SHIM_BINARY = 'containerd-shim-berth-v1';

/** Annotations that group containers into one shim, first match wins. */
const GROUP_ANNOTATIONS = ['io.containerd.berth.v1.group', 'io.containerd.runc.v2.group'];

/** How long a berth shim berthd starts stays after its last task, waiting for the next one. */
export const DEFAULT_SHIM_IDLE_MS = 10_000;

export const isBerthShim = (binary: string): boolean => basename(binary) === BERTH_SHIM_BINARY;

/** The socket of the berth shim that serves container `id` of `namespace` for daemon `daemonAddress`. */
export function berthShimAddress(
  daemonAddress: string,
  namespace: string,
  id: string,
  annotations: Readonly<Record<string, unknown>> | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  let group: string | undefined;
  for (const name of GROUP_ANNOTATIONS) {
    const value = annotations?.[name];
    if (typeof value === 'string' && value !== '') {
      group = `group:${value}`;
      break;
    }
  }
  group ??= env.BERTH_SHIM_GROUPING === 'container' ? `container:${id}` : 'namespace';
  const dir = env.BERTH_SHIM_SOCKET_DIR || '/run/berth/s';
  const digest = createHash('sha256').update(`${daemonAddress}\0${namespace}\0${group}`).digest('hex');
  return `unix://${join(dir, digest)}`;
}

/** The annotations of an OCI spec given as JSON bytes (none when it does not parse). */
export function specAnnotations(spec: Uint8Array): Record<string, unknown> | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(spec).toString('utf8')) as { annotations?: unknown };
    return parsed.annotations && typeof parsed.annotations === 'object'
      ? (parsed.annotations as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
