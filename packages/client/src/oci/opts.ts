import { hostname as osHostname } from 'node:os';
import { posix } from 'node:path';
import { InvalidArgumentError, requireNamespace } from '@berth/api';
import { replaceOrAppendEnv } from './env';
import { withHostHostsFile, withHostResolvconf } from './mounts';
import { compose, DEFAULT_UNIX_ENV, ensureLinux, ensureProcess, type SpecOpt } from './spec';
import type { Capabilities, DeviceCgroup, LinuxNamespace, NamespaceType, Spec } from './types';

/** Replaces the whole command line (ctr's `run IMAGE ID CMD...`: the entrypoint goes too). */
export function withProcessArgs(...args: string[]): SpecOpt {
  return (spec) => {
    const process = ensureProcess(spec);
    if (args.length > 0) process.args = [...args];
    else delete process.args;
  };
}

export function withProcessCwd(cwd: string): SpecOpt {
  return (spec) => {
    ensureProcess(spec).cwd = cwd;
  };
}

/** Sets (`K=v`) or unsets (`K`) environment variables, keeping the others in place. */
export function withEnv(env: readonly string[]): SpecOpt {
  return (spec) => {
    if (env.length === 0) return;
    const process = ensureProcess(spec);
    process.env = replaceOrAppendEnv(process.env ?? [], env);
    if (process.env.length === 0) delete process.env;
  };
}

/** Sets PATH to the default search path. */
export const withDefaultPathEnv: SpecOpt = withEnv(DEFAULT_UNIX_ENV);

/** A terminal for the process, and TERM=xterm as containerd sets it. */
export const withTTY: SpecOpt = (spec) => {
  const process = ensureProcess(spec);
  process.terminal = true;
  if (spec.linux) process.env = [...(process.env ?? []), 'TERM=xterm'];
};

export function withTTYSize(width: number, height: number): SpecOpt {
  return (spec) => {
    ensureProcess(spec).consoleSize = { height, width };
  };
}

export function withHostname(name: string): SpecOpt {
  return (spec) => {
    if (name === '') delete spec.hostname;
    else spec.hostname = name;
  };
}

/** An unmanaged root filesystem at `path` (ctr's `--rootfs`). */
export function withRootfsPath(path: string): SpecOpt {
  return (spec) => {
    spec.root = { ...spec.root, path };
  };
}

export const withRootfsReadonly: SpecOpt = (spec) => {
  spec.root = { path: spec.root?.path ?? '', readonly: true };
};

/** Leaves the container in the host's namespace of this type (removes it from the spec). */
export function withHostNamespace(type: NamespaceType): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    const namespaces = linux.namespaces ?? [];
    const at = namespaces.findIndex((n) => n.type === type);
    if (at >= 0) namespaces.splice(at, 1);
  };
}

/** Uses this namespace (a new one, or joins `path`), replacing one of the same type. */
export function withLinuxNamespace(ns: LinuxNamespace): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    linux.namespaces ??= [];
    const namespaces = linux.namespaces;
    const at = namespaces.findIndex((n) => n.type === ns.type);
    if (at >= 0) namespaces[at] = { ...ns };
    else namespaces.push({ ...ns });
  };
}

/**
 * `--net-host` as ctr does it: the host's network namespace, its /etc/hosts and
 * /etc/resolv.conf read-only, and HOSTNAME set to the host's name.
 */
export function withNetHost(hostname: string = osHostname()): SpecOpt {
  return compose(
    withHostNamespace('network'),
    withHostHostsFile,
    withHostResolvconf,
    withEnv([`HOSTNAME=${hostname}`]),
  );
}

export const withNoNewPrivileges: SpecOpt = (spec) => {
  ensureProcess(spec).noNewPrivileges = true;
};

export const withNewPrivileges: SpecOpt = (spec) => {
  delete ensureProcess(spec).noNewPrivileges;
};

/** The cgroup path (`''` leaves the choice to the runtime). */
export function withCgroup(path: string): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    if (path === '') delete linux.cgroupsPath;
    else linux.cgroupsPath = path;
  };
}

/** The cgroup path `/<namespace>/<id>`, the default. */
export const withNamespacedCgroup: SpecOpt = (spec, ctx) => {
  ensureLinux(spec).cgroupsPath = posix.join('/', requireNamespace(ctx), ctx.id);
};

export function withAnnotations(annotations: Record<string, string>): SpecOpt {
  return (spec) => {
    if (Object.keys(annotations).length === 0 && !spec.annotations) return;
    spec.annotations = { ...spec.annotations, ...annotations };
  };
}

function ensureCapabilities(spec: Spec): Capabilities {
  const process = ensureProcess(spec);
  process.capabilities ??= {};
  return process.capabilities;
}

function checkCapabilities(caps: readonly string[]): void {
  for (const c of caps) {
    if (!c.startsWith('CAP_'))
      throw new InvalidArgumentError(`capability "${c}" must be given with its CAP_ prefix`);
  }
}

/** Sets the bounding, effective and permitted capabilities. */
export function withCapabilities(caps: readonly string[]): SpecOpt {
  checkCapabilities(caps);
  return (spec) => {
    const c = ensureCapabilities(spec);
    c.bounding = [...caps];
    c.effective = [...caps];
    c.permitted = [...caps];
  };
}

export function withAddedCapabilities(caps: readonly string[]): SpecOpt {
  checkCapabilities(caps);
  return (spec) => {
    const c = ensureCapabilities(spec);
    for (const key of ['bounding', 'effective', 'permitted'] as const) {
      c[key] ??= [];
      const list = c[key];
      for (const cap of caps) if (!list.includes(cap)) list.push(cap);
    }
  };
}

export function withDroppedCapabilities(caps: readonly string[]): SpecOpt {
  checkCapabilities(caps);
  return (spec) => {
    const c = ensureCapabilities(spec);
    for (const key of ['bounding', 'effective', 'permitted'] as const) {
      const kept = (c[key] ?? []).filter((cap) => !caps.includes(cap));
      if (kept.length > 0) c[key] = kept;
      else delete c[key];
    }
  };
}

function ensureDevices(spec: Spec): DeviceCgroup[] {
  const linux = ensureLinux(spec);
  linux.resources ??= {};
  linux.resources.devices ??= [];
  return linux.resources.devices;
}

const charDevice = (major: number, minor?: number): DeviceCgroup => ({
  allow: true,
  type: 'c',
  major,
  ...(minor !== undefined ? { minor } : {}),
  access: 'rwm',
});

/**
 * Lets the container use the usual character devices: null, random, full, tty, zero,
 * urandom, console, the pts and ptmx (ctr run adds these to the deny-all default).
 */
export const withDefaultUnixDevices: SpecOpt = (spec) => {
  ensureDevices(spec).push(
    charDevice(1, 3),
    charDevice(1, 8),
    charDevice(1, 7),
    charDevice(5, 0),
    charDevice(1, 5),
    charDevice(1, 9),
    charDevice(5, 1),
    charDevice(136),
    charDevice(5, 2),
  );
};

/** Every device readable, writable and creatable. */
export const withAllDevicesAllowed: SpecOpt = (spec) => {
  const devices = ensureDevices(spec);
  devices.splice(0, devices.length, { allow: true, access: 'rwm' });
};

/** CPU shares (ctr run passes 1024 unless told otherwise). */
export function withCPUShares(shares: number): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    linux.resources ??= {};
    linux.resources.cpu = { ...linux.resources.cpu, shares };
  };
}

export function withMemoryLimit(bytes: number): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    linux.resources ??= {};
    linux.resources.memory = { ...linux.resources.memory, limit: bytes };
  };
}
