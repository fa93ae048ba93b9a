import type { BigIntStats } from 'node:fs';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withAllDevicesAllowed, withCapabilities } from './opts';
import { compose, ensureLinux, ensureProcess, type SpecOpt } from './spec';
import type { LinuxDevice } from './types';

/** Capability names by number, as the kernel numbers them (up to 5.9). */
export const KNOWN_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** The names of the bits set in a capability mask (unknown bits are left out). */
export function capabilitiesFromMask(mask: bigint): string[] {
  const names: string[] = [];
  KNOWN_CAPABILITIES.forEach((name, bit) => {
    if ((mask >> BigInt(bit)) & 1n) names.push(name);
  });
  return names;
}

/** This process's effective capabilities, from /proc/self/status. */
export async function currentCapabilities(): Promise<string[]> {
  const status = await readFile('/proc/self/status', 'utf8');
  const line = status.split('\n').find((l) => l.startsWith('CapEff:'));
  if (!line) throw new Error('/proc/self/status has no CapEff line');
  return capabilitiesFromMask(BigInt(`0x${line.slice('CapEff:'.length).trim()}`));
}

/** Gives the container every capability the caller has. */
export const withAllCurrentCapabilities: SpecOpt = async (spec, ctx) => {
  await withCapabilities(await currentCapabilities())(spec, ctx);
};

export function withMaskedPaths(paths: readonly string[]): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    if (paths.length > 0) linux.maskedPaths = [...paths];
    else delete linux.maskedPaths;
  };
}

export function withReadonlyPaths(paths: readonly string[]): SpecOpt {
  return (spec) => {
    const linux = ensureLinux(spec);
    if (paths.length > 0) linux.readonlyPaths = [...paths];
    else delete linux.readonlyPaths;
  };
}

function writable(type: string): SpecOpt {
  return (spec) => {
    for (const m of spec.mounts ?? []) {
      if (m.type === type && m.options) m.options = m.options.map((o) => (o === 'ro' ? 'rw' : o));
    }
  };
}

export const withWriteableSysfs: SpecOpt = writable('sysfs');
export const withWriteableCgroupfs: SpecOpt = writable('cgroup');

export const withSeccompUnconfined: SpecOpt = (spec) => {
  delete ensureLinux(spec).seccomp;
};

const clearLabels: SpecOpt = (spec) => {
  const process = ensureProcess(spec);
  delete process.selinuxLabel;
  delete process.apparmorProfile;
};

// Directories under /dev that hold no device the container should inherit.
const SKIPPED_DEV_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

const S_IFMT = 0o170000n;
const DEVICE_TYPES: Record<string, string> = { [String(0o060000)]: 'b', [String(0o020000)]: 'c' };

// glibc's major()/minor() of a 64-bit dev_t.
const major = (dev: bigint) => Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
const minor = (dev: bigint) => Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));

/** The block and character devices under `dir` (recursively), as runc wants them in linux.devices. */
export async function hostDevices(dir = '/dev'): Promise<LinuxDevice[]> {
  const out: LinuxDevice[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DEV_DIRS.has(entry.name)) out.push(...(await hostDevices(path)));
      continue;
    }
    if (entry.name === 'console') continue;
    let st: BigIntStats;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      continue; // a device that vanished while we looked
    }
    const type = DEVICE_TYPES[String(st.mode & S_IFMT)];
    if (!type) continue;
    out.push({
      path,
      type,
      major: major(st.rdev),
      minor: minor(st.rdev),
      fileMode: Number(st.mode & ~S_IFMT),
      uid: Number(st.uid),
      gid: Number(st.gid),
    });
  }
  return out;
}

/** Every host device node, inside the container too. */
export const withHostDevices: SpecOpt = async (spec) => {
  const linux = ensureLinux(spec);
  linux.devices = [...(linux.devices ?? []), ...(await hostDevices())];
};

/**
 * ctr's `--privileged`: every capability the caller has, nothing masked or read-only,
 * writable /sys and cgroupfs, no LSM labels, no seccomp, every device allowed and present.
 */
export const withPrivileged: SpecOpt = compose(
  withAllCurrentCapabilities,
  withMaskedPaths([]),
  withReadonlyPaths([]),
  withWriteableSysfs,
  withWriteableCgroupfs,
  clearLabels,
  withSeccompUnconfined,
  withAllDevicesAllowed,
  withHostDevices,
);
