import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '@berth/api';
import { profileFromPath } from './lsm';

/** The OCI runtime spec's `linux.seccomp` (what runc hands to libseccomp). */
export interface LinuxSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: LinuxSyscall[];
}

export interface LinuxSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[];
}

const EPERM = 1;
const ENOSYS = 38;

/**
 * The seccomp architectures of one machine: the native ABI and the ones its kernel also runs
 * (x86_64 runs i386 binaries through int 0x80 and the x32 ABI). A denylist must name every
 * ABI, or a process reaches a denied call through another one's syscall numbers.
 */
export const SECCOMP_ARCHITECTURES: Record<string, string[]> = {
  x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  ia32: ['SCMP_ARCH_X86'],
  arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
  arm: ['SCMP_ARCH_ARM'],
  riscv64: ['SCMP_ARCH_RISCV64'],
  ppc64: ['SCMP_ARCH_PPC64LE'],
  s390x: ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'],
};

/** Namespace flags of clone(2)/unshare(2): making any namespace is a CAP_SYS_ADMIN act in the kernel. */
const CLONE_NAMESPACE_FLAGS = {
  CLONE_NEWNS: 0x00020000,
  CLONE_NEWCGROUP: 0x02000000,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
};
/** Only unshare(2) takes CLONE_NEWTIME: in clone(2)'s flags the same bit is part of the exit signal. */
const CLONE_NEWTIME = 0x00000080;

/**
 * personality(2) values that change nothing a container's neighbours rely on: PER_LINUX,
 * PER_LINUX32, UNAME26 alone or with PER_LINUX32, and 0xffffffff (the query). Others turn off
 * address-space randomization (ADDR_NO_RANDOMIZE) or make reads executable (READ_IMPLIES_EXEC),
 * which exploits ask for and programs do not.
 */
export const SAFE_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff] as const;

/**
 * One group of the denylist: syscalls that act beyond the container (on the host's kernel,
 * clock, devices or other processes), the capabilities any of which lets a container use them
 * (none: always denied), and why. The kernel checks the same capabilities; the profile adds a
 * second wall when the checks have holes (user namespaces give a process every capability in
 * its own namespace, which is why a container without CAP_SYS_ADMIN must not make one).
 */
export interface SeccompGroup {
  name: string;
  why: string;
  /** Any one of these in the container's bounding set lifts the group. */
  relaxedBy: string[];
  syscalls: string[];
}

export const SECCOMP_GROUPS: readonly SeccompGroup[] = [
  {
    name: 'kernel modules',
    why: 'loading code into the host kernel: the one kernel every container shares',
    relaxedBy: ['CAP_SYS_MODULE'],
    syscalls: [
      'init_module',
      'finit_module',
      'delete_module',
      'create_module',
      'query_module',
      'get_kernel_syms',
    ],
  },
  {
    name: 'reboot and kexec',
    why: 'restarting or replacing the host kernel',
    relaxedBy: ['CAP_SYS_BOOT'],
    syscalls: ['reboot', 'kexec_load', 'kexec_file_load'],
  },
  {
    name: 'mounts',
    why: 'the mount table is where the container boundary is drawn (masked /proc paths, read-only binds, the root itself); the new mount API too',
    relaxedBy: ['CAP_SYS_ADMIN'],
    syscalls: [
      'mount',
      'umount',
      'umount2',
      'pivot_root',
      'fsopen',
      'fsconfig',
      'fsmount',
      'fspick',
      'move_mount',
      'open_tree',
      'mount_setattr',
    ],
  },
  {
    name: 'namespaces',
    why: "joining another namespace leaves the container's; a new user namespace gives every capability inside it and opens kernel paths (mounts, netfilter) meant for root",
    relaxedBy: ['CAP_SYS_ADMIN'],
    syscalls: ['setns'],
  },
  {
    name: 'kernel administration',
    why: 'host-wide state no namespace isolates: swap, disk quotas, the dcookie table, filesystem-wide event watches',
    relaxedBy: ['CAP_SYS_ADMIN'],
    syscalls: ['swapon', 'swapoff', 'quotactl', 'quotactl_fd', 'lookup_dcookie', 'fanotify_init'],
  },
  {
    name: 'bpf',
    why: 'programs run inside the host kernel; maps and programs are not namespaced',
    relaxedBy: ['CAP_SYS_ADMIN', 'CAP_BPF'],
    syscalls: ['bpf'],
  },
  {
    name: 'perf',
    why: "performance counters observe the host's CPUs and other processes, and have been a steady source of kernel bugs",
    relaxedBy: ['CAP_SYS_ADMIN', 'CAP_PERFMON'],
    syscalls: ['perf_event_open'],
  },
  {
    name: 'process tracing',
    why: "containers of a pod may share a PID namespace: ptrace and process_vm_* read and write another container's memory where the uids match; userfaultfd stalls the kernel mid-copy, the heart of many race exploits (the kernel itself asks for CAP_SYS_PTRACE when vm.unprivileged_userfaultfd is 0)",
    relaxedBy: ['CAP_SYS_PTRACE'],
    syscalls: ['ptrace', 'process_vm_readv', 'process_vm_writev', 'userfaultfd'],
  },
  {
    name: 'clock',
    why: 'the system clock is not namespaced: setting it changes time for the host and every container (adjtimex stays: its read mode is ntp_gettime, and the kernel gates its writes on CAP_SYS_TIME)',
    relaxedBy: ['CAP_SYS_TIME'],
    syscalls: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'],
  },
  {
    name: 'process accounting',
    why: "acct writes a record of every process on the host's kernel to a file",
    relaxedBy: ['CAP_SYS_PACCT'],
    syscalls: ['acct'],
  },
  {
    name: 'raw I/O ports',
    why: "direct access to the host's I/O ports: devices no cgroup rule covers",
    relaxedBy: ['CAP_SYS_RAWIO'],
    syscalls: ['iopl', 'ioperm'],
  },
  {
    name: 'NUMA placement',
    why: "moving pages between memory nodes affects pages shared with the host (page cache) and other containers' placement",
    relaxedBy: ['CAP_SYS_NICE'],
    syscalls: ['mbind', 'set_mempolicy', 'set_mempolicy_home_node', 'migrate_pages', 'move_pages'],
  },
  {
    name: 'kernel log',
    why: "the kernel ring buffer is the host's: addresses in it defeat KASLR",
    relaxedBy: ['CAP_SYSLOG', 'CAP_SYS_ADMIN'],
    syscalls: ['syslog'],
  },
  {
    name: 'terminal hangup',
    why: "vhangup hangs up the controlling terminal, which may be the host's",
    relaxedBy: ['CAP_SYS_TTY_CONFIG'],
    syscalls: ['vhangup'],
  },
  {
    name: 'file handles',
    why: 'open_by_handle_at opens any inode of a mounted filesystem by number, outside the container\'s root (the "shocker" escape)',
    relaxedBy: ['CAP_DAC_READ_SEARCH'],
    syscalls: ['open_by_handle_at'],
  },
  {
    name: 'kernel keyrings',
    why: "keyrings are keyed by uid across the host: uid 0 in a container shares the host root user's keys; no capability makes that safe",
    relaxedBy: [],
    syscalls: ['keyctl', 'add_key', 'request_key'],
  },
  {
    name: 'obsolete',
    why: 'interfaces no program of this century needs and whose code is rarely exercised: a.out loading, sysctl(2), nfsservctl, vm86 mode, ustat/sysfs',
    relaxedBy: [],
    syscalls: ['uselib', '_sysctl', 'nfsservctl', 'vm86', 'vm86old', 'ustat', 'sysfs'],
  },
];

export interface DefaultSeccompOptions {
  /** The container's bounding capabilities (with the CAP_ prefix): what it can ever hold. */
  capabilities: readonly string[];
  /** Node's process.arch of the machine the container runs on (this machine by default). */
  arch?: string;
}

/** The argument holding clone(2)'s flags: s390 swaps the first two. */
function cloneFlagsIndex(arch: string): number {
  return arch === 's390x' ? 1 : 0;
}

/**
 * berth's RuntimeDefault profile (`runtime/default`, `docker/default`): every syscall is
 * allowed but those of SECCOMP_GROUPS a capability of the container does not lift, which
 * fail with EPERM, as the kernel's own capability check would. A denylist rather than an
 * allowlist: programs keep working on new syscalls, and what is denied is each written down
 * with its reason. Namespaces are made by clone/unshare flags, filtered by argument; clone3
 * passes its flags in memory seccomp cannot read, so it fails with ENOSYS, which makes glibc
 * and musl fall back to clone(2) where the flags can be seen.
 */
export function defaultSeccompProfile(opts: DefaultSeccompOptions): LinuxSeccomp {
  const arch = opts.arch ?? process.arch;
  const architectures = SECCOMP_ARCHITECTURES[arch];
  if (!architectures) throw new InvalidArgumentError(`no default seccomp profile for architecture "${arch}"`);
  const caps = new Set(opts.capabilities);
  const lifted = (g: { relaxedBy: string[] }) => g.relaxedBy.some((c) => caps.has(c));
  const syscalls: LinuxSyscall[] = [];
  const denied = SECCOMP_GROUPS.filter((g) => !lifted(g)).flatMap((g) => g.syscalls);
  if (denied.length > 0) syscalls.push({ names: denied, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM });
  if (!caps.has('CAP_SYS_ADMIN')) {
    // One rule per flag: seccomp can test masked bits for equality, not "any of".
    const flagsIndex = cloneFlagsIndex(arch);
    for (const flag of Object.values(CLONE_NAMESPACE_FLAGS)) {
      syscalls.push({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: flagsIndex, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      });
    }
    for (const flag of [...Object.values(CLONE_NAMESPACE_FLAGS), CLONE_NEWTIME]) {
      syscalls.push({
        names: ['unshare'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      });
    }
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  }
  syscalls.push({
    names: ['personality'],
    action: 'SCMP_ACT_ERRNO',
    errnoRet: EPERM,
    args: SAFE_PERSONALITIES.map((value) => ({ index: 0, value, op: 'SCMP_CMP_NE' })),
  });
  return { defaultAction: 'SCMP_ACT_ALLOW', architectures: [...architectures], syscalls };
}

export interface SeccompRequest {
  /** The security context's name in messages (`container "x" linux.security_context`). */
  field: string;
  profile: { profileType: string; localhostRef: string } | undefined;
  /** The deprecated seccomp_profile_path, used when `profile` is unset. */
  deprecatedPath: string;
  privileged: boolean;
}

/**
 * The seccomp section a security context asks for (containerd's generateSeccompSpecOpts):
 * none when privileged, unset or Unconfined; berth's default profile for RuntimeDefault
 * (`runtime/default`, `docker/default`), made from the capabilities the spec holds when this
 * option runs, so it must come after every capability option; the file of a Localhost
 * profile, read now, refused naming its path when missing or not an OCI seccomp object.
 */
export function withSeccompProfile(
  req: SeccompRequest,
): (spec: {
  process?: { capabilities?: { bounding?: string[] } };
  linux?: { seccomp?: unknown };
}) => Promise<void> {
  return async (spec) => {
    if (spec.linux) delete spec.linux.seccomp;
    if (req.privileged) return;
    const sp = req.profile ?? profileFromPath(req.deprecatedPath, `${req.field}.seccomp_profile_path`);
    if (!sp || sp.profileType === 'Unconfined') {
      if (sp?.localhostRef)
        throw new InvalidArgumentError(
          `${req.field}.seccomp: localhost_ref "${sp.localhostRef}" is only valid with profile type Localhost`,
        );
      return;
    }
    if (sp.profileType !== 'Localhost' && sp.localhostRef)
      throw new InvalidArgumentError(
        `${req.field}.seccomp: localhost_ref "${sp.localhostRef}" is only valid with profile type Localhost`,
      );
    spec.linux ??= {};
    if (sp.profileType === 'RuntimeDefault') {
      spec.linux.seccomp = defaultSeccompProfile({
        capabilities: spec.process?.capabilities?.bounding ?? [],
      });
      return;
    }
    if (sp.profileType !== 'Localhost')
      throw new InvalidArgumentError(`${req.field}.seccomp: unknown profile type "${sp.profileType}"`);
    spec.linux.seccomp = await readLocalhostProfile(sp.localhostRef.replace(/^localhost\//, ''));
  };
}

/** A Localhost profile's file: the OCI seccomp section itself, as containerd reads it. */
export async function readLocalhostProfile(file: string): Promise<LinuxSeccomp> {
  if (!file.startsWith('/'))
    throw new InvalidArgumentError(`seccomp profile "localhost/${file}": the path must be absolute`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError(`cannot load seccomp profile "${file}": ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`decoding seccomp profile "${file}" failed: ${(e as Error).message}`);
  }
  const p = parsed as Partial<LinuxSeccomp> | null;
  if (typeof p !== 'object' || p === null || Array.isArray(p) || typeof p.defaultAction !== 'string')
    throw new InvalidArgumentError(
      `seccomp profile "${file}" is not an OCI seccomp object: no defaultAction`,
    );
  if (p.syscalls !== undefined && !Array.isArray(p.syscalls))
    throw new InvalidArgumentError(`seccomp profile "${file}": syscalls is not a list`);
  return p as LinuxSeccomp;
}
