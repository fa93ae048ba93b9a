import { posix } from 'node:path';
import { type AnyValue, requireNamespace, SPEC_TYPE_URL } from '@berth/api';
import type { RootfsReader } from './rootfs';
import type { Capabilities, Linux, Mount, Process, Spec } from './types';

/** The runtime-spec version containerd 1.6 writes (its vendored runtime-spec). */
export const OCI_VERSION = '1.0.2-dev';

/** The PATH a container gets when its image sets no environment. */
export const DEFAULT_UNIX_ENV: readonly string[] = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
];

/**
 * What an option may need to know about the container it shapes (containerd passes the
 * container record and a client; we pass only what the options read).
 */
export interface SpecContext {
  namespace: string;
  /** The container id; the default cgroups path is `/<namespace>/<id>`. */
  id: string;
  /**
   * Where the container's root filesystem can be read, to resolve users and groups from its
   * /etc/passwd and /etc/group: a host directory, or a reader (e.g. over the image's layers).
   * Without it, an absolute `root.path` in the spec is used, as containerd does.
   */
  rootfs?: string | RootfsReader;
}

/** One change to a spec; options compose by running in order. */
export type SpecOpt = (spec: Spec, ctx: SpecContext) => void | Promise<void>;

// The capabilities a container process keeps by default (Docker's set, which containerd copies).
const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

// /proc and /sys entries that leak host information or allow host changes.
const MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/proc/scsi',
];

const READONLY_PATHS: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

/**
 * The kernel filesystems every container gets. containerd 1.6 mounts /run as a tmpfs and
 * leaves /sys/fs/cgroup to the runtime (runc mounts the cgroup tree itself when it is absent).
 */
export function defaultMounts(): Mount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/run',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
  ];
}

function defaultCapabilities(): Capabilities {
  return {
    bounding: [...DEFAULT_CAPABILITIES],
    effective: [...DEFAULT_CAPABILITIES],
    permitted: [...DEFAULT_CAPABILITIES],
  };
}

/**
 * containerd's default Linux spec for container `id` in `namespace` (what `ctr oci spec`
 * prints): its own namespaces, the kernel mounts, default capabilities, masked and read-only
 * /proc paths, 1024 open files, no new privileges, every device denied in the cgroup.
 * The id may be empty (cgroups path `/<namespace>`), as for `ctr oci spec`.
 */
export function defaultSpec(namespace: string, id: string): Spec {
  requireNamespace({ namespace });
  const process: Process = {
    user: { uid: 0, gid: 0 },
    cwd: '/',
    capabilities: defaultCapabilities(),
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    noNewPrivileges: true,
  };
  const linux: Linux = {
    resources: { devices: [{ allow: false, access: 'rwm' }] },
    cgroupsPath: posix.join('/', namespace, id),
    namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
    maskedPaths: [...MASKED_PATHS],
    readonlyPaths: [...READONLY_PATHS],
  };
  return { ociVersion: OCI_VERSION, process, root: { path: 'rootfs' }, mounts: defaultMounts(), linux };
}

/** Runs options in order on a spec (containerd's ApplyOpts). */
export async function applyOpts(spec: Spec, ctx: SpecContext, opts: readonly SpecOpt[]): Promise<Spec> {
  for (const opt of opts) await opt(spec, ctx);
  return spec;
}

/** The default spec for ctx's container, then each option in order (containerd's GenerateSpec). */
export function generateSpec(ctx: SpecContext, ...opts: SpecOpt[]): Promise<Spec> {
  return applyOpts(defaultSpec(ctx.namespace, ctx.id), ctx, opts);
}

/** Several options as one. */
export function compose(...opts: SpecOpt[]): SpecOpt {
  return async (spec, ctx) => {
    await applyOpts(spec, ctx, opts);
  };
}

/** A spec as the Containers service carries it. */
export function specToAny(spec: Spec): AnyValue {
  return { typeUrl: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(spec)) };
}

/** The process section, created empty when a spec has none. */
export function ensureProcess(spec: Spec): Process {
  spec.process ??= { user: { uid: 0, gid: 0 }, cwd: '' };
  return spec.process;
}

/** The linux section, created empty when a spec has none. */
export function ensureLinux(spec: Spec): Linux {
  spec.linux ??= {};
  return spec.linux;
}
