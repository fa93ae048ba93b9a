import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, realpath } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { posix } from 'node:path';
import { InvalidArgumentError, NotFoundError, type wire } from '@berth/api';
import { oci } from '@berth/client';
import type { RuntimeImageConfig } from '../image/resolve';
import { checkAppArmor, checkSelinux } from '../security/lsm';
import { withSeccompProfile } from '../security/seccomp';

type Spec = oci.Spec;
type SpecOpt = oci.SpecOpt;

/** The annotations containerd 1.6 puts on a container's spec (pkg/cri/annotations). */
export const ANNOTATIONS = {
  containerType: 'io.kubernetes.cri.container-type',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  containerName: 'io.kubernetes.cri.container-name',
  imageName: 'io.kubernetes.cri.image-name',
} as const;

/** What a container's spec is made from. */
export interface ContainerSpecInput {
  id: string;
  sandboxId: string;
  /** The pause process whose namespaces the container joins. */
  sandboxPid: number;
  /** The pid whose PID namespace the container joins when its PID mode is TARGET. */
  targetPid?: number;
  config: wire.cri.ContainerConfig;
  /** The pod's annotations its runtime's `pod_annotations` pass on. */
  podAnnotations?: Record<string, string>;
  sandboxConfig: wire.cri.PodSandboxConfig;
  /** The image's runtime config (User, Env, Entrypoint, Cmd, WorkingDir). */
  image: RuntimeImageConfig;
  /** The normalized image name (an annotation). */
  imageName: string;
  /** Mounts of the pod's files (/etc/hosts, resolv.conf, hostname, /dev/shm), given way to the config's. */
  extraMounts: wire.cri.Mount[];
  restrictOomScoreAdj: boolean;
  disableCgroup: boolean;
  /** Where the image's /etc/passwd and /etc/group are read (a mounted rootfs, or a reader). */
  rootfs?: string | oci.RootfsReader;
  /** The node's hostname (the HOSTNAME of a pod that sets none); os.hostname() by default. */
  nodeHostname?: string;
  /** /proc/self/mountinfo's text, to check propagation of host paths (read when absent). */
  mountinfo?: string;
  /** Whether swap can be limited (detected when absent): a memory limit then caps swap too. */
  swapAvailable?: boolean;
  /** Whether the host runs cgroup v2 alone (detected when absent): containers get a cgroup namespace. */
  cgroupUnified?: boolean;
}

const sc = (c: wire.cri.ContainerConfig) => c.linux?.securityContext;

/** Go's filepath.Clean for container paths: normalized, no trailing slash. */
function clean(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

function ensureProcess(spec: Spec): oci.Process {
  spec.process ??= { user: { uid: 0, gid: 0 }, cwd: '/' };
  return spec.process;
}

/**
 * The command line as the kubelet means it (moby's rules): a command replaces the image's
 * Entrypoint and drops its Cmd; args alone replace Cmd; neither keeps both.
 */
export function processArgs(
  config: Pick<wire.cri.ContainerConfig, 'command' | 'args'>,
  image: RuntimeImageConfig,
) {
  let command = config.command ?? [];
  let args = config.args ?? [];
  if (command.length === 0) {
    if (args.length === 0) args = [...(image.Cmd ?? [])];
    command = [...(image.Entrypoint ?? [])];
  }
  const all = [...command, ...args];
  if (all.length === 0)
    throw new InvalidArgumentError('no command specified: the config and the image have none');
  return all;
}

/** `user[:group]` from run_as_username / run_as_user / run_as_group ('' when none is set). */
export function userString(s: wire.cri.LinuxContainerSecurityContext | undefined): string {
  let user = s?.runAsUser ? String(s.runAsUser.value) : '';
  if (s?.runAsUsername) user = s.runAsUsername;
  const group = s?.runAsGroup ? String(s.runAsGroup.value) : '';
  if (user === '') {
    if (group !== '') throw new InvalidArgumentError(`user group "${group}" is specified without user`);
    return '';
  }
  return group ? `${user}:${group}` : user;
}

/** Unique, ascending (containerd's mergeGids). */
function mergeGids(a: readonly number[], b: readonly number[]): number[] {
  return [...new Set([...a, ...b])].sort((x, y) => x - y);
}

/** The cgroup path of a container under the pod's parent (systemd's slice:prefix:name form for a .slice). */
export function cgroupsPath(parent: string, id: string): string {
  if (parent.endsWith('.slice')) return `${posix.basename(parent)}:cri-containerd:${id}`;
  return posix.join(parent, id);
}

/** The mount of /proc/self/mountinfo holding `path`, with its optional fields (shared:N, master:N). */
function mountOf(mountinfo: string, path: string): { point: string; optional: string[] } | undefined {
  let best: { point: string; optional: string[] } | undefined;
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length < 7) continue;
    const point = f[4]!.replace(/\\040/g, ' ');
    const sep = f.indexOf('-');
    const inside = point === '/' || path === point || path.startsWith(`${point}/`);
    if (!inside) continue;
    // Later lines stack over earlier ones at the same point.
    if (!best || point.length >= best.point.length) best = { point, optional: f.slice(6, sep) };
  }
  return best;
}

function ensurePropagation(mountinfo: string, src: string, slaveOk: boolean): void {
  const m = mountOf(mountinfo, src);
  if (!m) throw new NotFoundError(`path "${src}": no mount holds it`);
  const ok = m.optional.some((o) => o.startsWith('shared:') || (slaveOk && o.startsWith('master:')));
  if (!ok)
    throw new InvalidArgumentError(
      `path "${src}" is mounted on "${m.point}" but it is not a shared${slaveOk ? ' or slave' : ''} mount`,
    );
}

const depth = (p: string) => clean(p).split('/').filter(Boolean).length;

/**
 * The config's mounts and the pod's files as binds (containerd's WithMounts): the config wins
 * over an extra mount of the same path, shallower mounts first, default mounts a bind replaces
 * (or all of /dev's under a /dev bind) dropped, cgroupfs read-only. A missing host path is
 * created as a directory, as containerd does; propagation other than private needs the host
 * mount to be shared (bidirectional) or shared/slave (host-to-container).
 */
export function withCriMounts(
  config: wire.cri.ContainerConfig,
  extra: wire.cri.Mount[],
  mountinfo: () => Promise<string>,
): SpecOpt {
  return async (spec) => {
    const cri = config.mounts ?? [];
    const mounts = [...cri];
    for (const e of extra) {
      if (!cri.some((c) => clean(c.containerPath) === clean(e.containerPath))) mounts.push(e);
    }
    mounts.sort((a, b) => depth(a.containerPath) - depth(b.containerPath));
    const defaults: oci.Mount[] = [
      ...(spec.mounts ?? []),
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
      },
    ];
    const dests = new Set(mounts.map((m) => clean(m.containerPath)));
    spec.mounts = defaults.filter((m) => {
      const dst = clean(m.destination);
      if (dests.has(dst)) return false;
      return !(dests.has('/dev') && dst.startsWith('/dev/'));
    });
    spec.linux ??= {};
    for (const m of mounts) {
      if (!m.hostPath) throw new InvalidArgumentError(`mount of "${m.containerPath}": host path is empty`);
      await mkdir(m.hostPath, { recursive: true, mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST')
          throw new InvalidArgumentError(`failed to mkdir "${m.hostPath}": ${e.message}`);
      });
      let src: string;
      try {
        src = await realpath(m.hostPath);
      } catch (e) {
        throw new NotFoundError(`failed to resolve symlink "${m.hostPath}": ${(e as Error).message}`);
      }
      const options = ['rbind'];
      switch (m.propagation) {
        case 'PROPAGATION_BIDIRECTIONAL':
          ensurePropagation(await mountinfo(), src, false);
          options.push('rshared');
          spec.linux.rootfsPropagation = 'rshared';
          break;
        case 'PROPAGATION_HOST_TO_CONTAINER':
          ensurePropagation(await mountinfo(), src, true);
          options.push('rslave');
          if (spec.linux.rootfsPropagation !== 'rshared' && spec.linux.rootfsPropagation !== 'rslave')
            spec.linux.rootfsPropagation = 'rslave';
          break;
        default:
          options.push('rprivate');
      }
      options.push(m.readonly ? 'ro' : 'rw');
      spec.mounts.push({ destination: m.containerPath, type: 'bind', source: src, options });
    }
  };
}

/** Host devices the config asks for, present in the container and allowed in its cgroup. */
export function withCriDevices(config: wire.cri.ContainerConfig): SpecOpt {
  return async (spec) => {
    for (const d of config.devices ?? []) {
      let path: string;
      try {
        path = await realpath(d.hostPath);
      } catch {
        throw new NotFoundError(`device "${d.hostPath}" not found`);
      }
      const st = statSync(path, { bigint: true });
      const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : '';
      if (!type) throw new InvalidArgumentError(`"${d.hostPath}" is not a device node`);
      const rdev = st.rdev;
      const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
      spec.linux ??= {};
      spec.linux.devices ??= [];
      spec.linux.devices.push({
        path: d.containerPath,
        type,
        major,
        minor,
        fileMode: Number(st.mode & 0o777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
      });
      spec.linux.resources ??= {};
      spec.linux.resources.devices ??= [];
      spec.linux.resources.devices.push({
        allow: true,
        type,
        major,
        minor,
        access: d.permissions || 'rwm',
      });
    }
  };
}

/** CRI capability names have no CAP_ prefix; ALL adds (or drops) every one before the others apply. */
export function withCriCapabilities(
  s: wire.cri.LinuxContainerSecurityContext | undefined,
  allCaps: () => Promise<string[]>,
): SpecOpt {
  return async (spec, ctx) => {
    const caps = s?.capabilities;
    if (!caps) return;
    const isAll = (c: string) => c.toUpperCase() === 'ALL';
    const prefix = (c: string) => `CAP_${c.toUpperCase()}`;
    if (caps.addCapabilities.some(isAll)) await oci.withCapabilities(await allCaps())(spec, ctx);
    if (caps.dropCapabilities.some(isAll)) {
      const c = spec.process?.capabilities;
      if (c) {
        delete c.bounding;
        delete c.effective;
        delete c.permitted;
      }
    }
    await oci.withAddedCapabilities(caps.addCapabilities.filter((c) => !isAll(c)).map(prefix))(spec, ctx);
    await oci.withDroppedCapabilities(caps.dropCapabilities.filter((c) => !isAll(c)).map(prefix))(spec, ctx);
  };
}

/** The config's cgroup resources (only those set: 0 and '' mean "the runtime's default"). */
export function linuxResources(
  r: wire.cri.LinuxContainerResources | undefined,
  swap = swapControllerAvailable(),
): oci.LinuxResources {
  const out: oci.LinuxResources = {};
  if (!r) return out;
  const cpu: NonNullable<oci.LinuxResources['cpu']> = {};
  if (r.cpuPeriod) cpu.period = r.cpuPeriod;
  if (r.cpuQuota) cpu.quota = r.cpuQuota;
  if (r.cpuShares) cpu.shares = r.cpuShares;
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  if (r.memoryLimitInBytes) {
    out.memory = { limit: r.memoryLimitInBytes };
    // No swap beyond the limit unless asked for (containerd's default, where swap is accounted).
    if (swap) out.memory.swap = r.memoryLimitInBytes;
  }
  if (r.memorySwapLimitInBytes && swap) out.memory = { ...out.memory, swap: r.memorySwapLimitInBytes };
  const huge = (r.hugepageLimits ?? []).map((h) => ({ pageSize: h.pageSize, limit: h.limit }));
  if (huge.length > 0) out.hugepageLimits = huge;
  if (r.unified && Object.keys(r.unified).length > 0) out.unified = { ...r.unified };
  return out;
}

let swapAvailable: boolean | undefined;

/**
 * Whether memory+swap can be limited: cgroup v1's memory.memsw.* (swap accounting on), or
 * cgroup v2's memory.swap.max (containerd's SwapControllerAvailable).
 */
export function swapControllerAvailable(): boolean {
  if (swapAvailable === undefined) {
    swapAvailable = cgroupUnified()
      ? existsSync('/sys/fs/cgroup/init.scope/memory.swap.max') ||
        existsSync('/sys/fs/cgroup/system.slice/memory.swap.max')
      : existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes');
  }
  return swapAvailable;
}

/** Merges resources into a spec's (what UpdateContainerResources does to the stored spec too). */
export function withLinuxResources(
  r: wire.cri.LinuxContainerResources | undefined,
  swap = swapControllerAvailable(),
): SpecOpt {
  return (spec) => {
    const res = linuxResources(r, swap);
    spec.linux ??= {};
    spec.linux.resources ??= {};
    const into = spec.linux.resources;
    if (res.cpu) into.cpu = { ...into.cpu, ...res.cpu };
    if (res.memory) into.memory = { ...into.memory, ...res.memory };
    if (res.hugepageLimits) into.hugepageLimits = res.hugepageLimits;
    if (res.unified) into.unified = res.unified;
  };
}

/** The daemon's own oom_score_adj: a container asked for less gets this (restrict_oom_score_adj). */
export async function currentOomScoreAdj(): Promise<number> {
  return Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim());
}

/**
 * The seccomp profile of a container (see withSeccompProfile): the `seccomp` field, else the
 * deprecated `seccomp_profile_path`; berth's default profile for RuntimeDefault.
 */
export function withCriSeccomp(
  s: wire.cri.LinuxContainerSecurityContext | undefined,
  field = 'linux.security_context',
): SpecOpt {
  const opt = withSeccompProfile({
    field,
    profile: s?.seccomp,
    deprecatedPath: s?.seccompProfilePath ?? '',
    privileged: s?.privileged ?? false,
  });
  return (spec) => opt(spec);
}

/** Whether the host mounts cgroup v2 alone (containerd's cgroups.Mode() == Unified). */
function cgroupUnified(): boolean {
  return existsSync('/sys/fs/cgroup/cgroup.controllers');
}

/** The pod's namespaces by the pause process: network, IPC, UTS always; PID unless the container's own. */
export function withPodNamespaces(
  s: wire.cri.LinuxContainerSecurityContext | undefined,
  sandboxPid: number,
  targetPid: number,
): SpecOpt {
  return async (spec, ctx) => {
    const ns = (type: oci.NamespaceType, pid: number, name: string) =>
      oci.withLinuxNamespace({ type, path: `/proc/${pid}/ns/${name}` })(spec, ctx);
    await ns('network', sandboxPid, 'net');
    await ns('ipc', sandboxPid, 'ipc');
    await ns('uts', sandboxPid, 'uts');
    if (s?.namespaceOptions?.pid !== 'CONTAINER') await ns('pid', targetPid, 'pid');
  };
}

/** The pod's files a container gets unless its config mounts the same path (containerd's containerMounts). */
export function sandboxMounts(
  config: wire.cri.ContainerConfig,
  files: { hostnamePath?: string; hostsPath?: string; resolvConfPath?: string; shmPath?: string },
): wire.cri.Mount[] {
  const inCri = (p: string) => (config.mounts ?? []).some((m) => clean(m.containerPath) === p);
  const readonly = sc(config)?.readonlyRootfs ?? false;
  const mount = (containerPath: string, hostPath: string, ro: boolean): wire.cri.Mount => ({
    containerPath,
    hostPath,
    readonly: ro,
    selinuxRelabel: false,
    propagation: 'PROPAGATION_PRIVATE',
  });
  const out: wire.cri.Mount[] = [];
  if (files.hostnamePath && !inCri('/etc/hostname') && existsSync(files.hostnamePath))
    out.push(mount('/etc/hostname', files.hostnamePath, readonly));
  if (files.hostsPath && !inCri('/etc/hosts')) out.push(mount('/etc/hosts', files.hostsPath, readonly));
  if (files.resolvConfPath && !inCri('/etc/resolv.conf'))
    out.push(mount('/etc/resolv.conf', files.resolvConfPath, readonly));
  if (!inCri('/dev/shm')) {
    const shm = sc(config)?.namespaceOptions?.ipc === 'NODE' ? '/dev/shm' : files.shmPath;
    if (shm) out.push(mount('/dev/shm', shm, false));
  }
  return out;
}

/**
 * The image's declared volumes a container gets (containerd's volumeMounts): each path the
 * config does not mount is a directory of the container's own, `<dir>/volumes/<random>`,
 * bound read-write; `makeId` names them.
 */
export function imageVolumeMounts(
  config: wire.cri.ContainerConfig,
  volumes: Record<string, unknown> | undefined,
  dir: string,
  makeId: () => string,
): wire.cri.Mount[] {
  const inCri = (p: string) => (config.mounts ?? []).some((m) => clean(m.containerPath) === clean(p));
  return Object.keys(volumes ?? {})
    .filter((dst) => !inCri(dst))
    .map((dst) => ({
      containerPath: dst,
      hostPath: posix.join(dir, 'volumes', makeId()),
      readonly: false,
      selinuxRelabel: false,
      propagation: 'PROPAGATION_PRIVATE',
    }));
}

/**
 * The options of a container's spec, in containerd 1.6's order (containerSpec, then
 * containerSpecOpts that need the rootfs for users and groups).
 */
export function containerSpecOpts(input: ContainerSpecInput): SpecOpt[] {
  const { config, sandboxConfig, image } = input;
  const s = sc(config);
  const opts: SpecOpt[] = [];
  // The kubelet and the runtime's seccomp/AppArmor fields decide those; rlimits are the runtime's.
  opts.push(oci.withoutMounts('/run'), (spec) => {
    if (spec.process) {
      delete spec.process.apparmorProfile;
      delete spec.process.rlimits;
    }
    if (spec.linux) delete spec.linux.seccomp;
  });
  opts.push(
    oci.withProcessArgs(...processArgs(config, image)),
    oci.withDefaultPathEnv,
    oci.withNewPrivileges,
  );
  const cwd = config.workingDir || image.WorkingDir;
  if (cwd) opts.push(oci.withProcessCwd(cwd));
  if (config.tty) opts.push(oci.withTTY);
  const hostname = sandboxConfig.hostname || input.nodeHostname || osHostname();
  opts.push(oci.withEnv([`HOSTNAME=${hostname}`]));
  opts.push(oci.withEnv([...(image.Env ?? []), ...(config.envs ?? []).map((e) => `${e.key}=${e.value}`)]));
  let mountinfo: string | undefined = input.mountinfo;
  const readMountinfo = async () => {
    mountinfo ??= await readFile('/proc/self/mountinfo', 'utf8');
    return mountinfo;
  };
  opts.push(withCriMounts(config, input.extraMounts, readMountinfo));
  // What the kubelet sends is the whole list (its defaults, or none for procMount Unmasked):
  // an empty list masks nothing, as containerd 1.6 does (containerd#5029).
  opts.push(oci.withMaskedPaths(s?.maskedPaths ?? []), oci.withReadonlyPaths(s?.readonlyPaths ?? []));
  opts.push(withCriDevices(config), withCriCapabilities(s, oci.currentCapabilities));
  if (s?.privileged) {
    if (!sandboxConfig.linux?.securityContext?.privileged)
      throw new InvalidArgumentError('no privileged container allowed in sandbox');
    opts.push(oci.withPrivileged);
  }
  // Ambient capabilities for a non-root user are undefined in Kubernetes: none, as Docker does.
  opts.push((spec) => {
    if (spec.process?.capabilities) delete spec.process.capabilities.ambient;
  });
  const field = `container "${config.metadata?.name ?? ''}" linux.security_context`;
  checkSelinux(field, s?.selinuxOptions);
  const apparmor = checkAppArmor(field, s?.apparmor, s?.apparmorProfile ?? '', s?.privileged ?? false);
  if (apparmor)
    opts.push((spec) => {
      ensureProcess(spec).apparmorProfile = apparmor;
    });
  // After every capability option: the default profile is relaxed by what the container holds.
  opts.push(withCriSeccomp(s, field));
  if (s?.noNewPrivs) opts.push(oci.withNoNewPrivileges);
  if (s?.readonlyRootfs) opts.push(oci.withRootfsReadonly);
  if (!input.disableCgroup) {
    opts.push(withLinuxResources(config.linux?.resources, input.swapAvailable ?? swapControllerAvailable()));
    const parent = sandboxConfig.linux?.cgroupParent ?? '';
    if (parent) opts.push(oci.withCgroup(cgroupsPath(parent, input.id)));
  } else {
    opts.push((spec) => {
      if (spec.linux) {
        delete spec.linux.cgroupsPath;
        delete spec.linux.resources;
      }
    });
  }
  const resources = config.linux?.resources;
  if (resources) {
    opts.push(async (spec) => {
      let adj = resources.oomScoreAdj;
      if (input.restrictOomScoreAdj) adj = Math.max(adj, await currentOomScoreAdj());
      ensureProcess(spec).oomScoreAdj = adj;
    });
  }
  opts.push(withPodNamespaces(s, input.sandboxPid, input.targetPid ?? input.sandboxPid));
  // cgroup v2 hides the host's hierarchy behind a cgroup namespace (not on v1, nor privileged: containerd's rule).
  if ((input.cgroupUnified ?? cgroupUnified()) && !s?.privileged)
    opts.push(oci.withLinuxNamespace({ type: 'cgroup' }));
  opts.push(
    oci.withAnnotations({
      ...input.podAnnotations,
      [ANNOTATIONS.containerType]: 'container',
      [ANNOTATIONS.sandboxId]: input.sandboxId,
      [ANNOTATIONS.sandboxNamespace]: sandboxConfig.metadata?.namespace ?? '',
      [ANNOTATIONS.sandboxName]: sandboxConfig.metadata?.name ?? '',
      [ANNOTATIONS.sandboxUid]: sandboxConfig.metadata?.uid ?? '',
      [ANNOTATIONS.containerName]: config.metadata?.name ?? '',
      [ANNOTATIONS.imageName]: input.imageName,
    }),
  );
  // Users and groups come from the image's files (containerSpecOpts in containerd).
  let user = userString(s);
  if (user === '') user = image.User ?? '';
  if (user !== '') opts.push(oci.withUser(user));
  let gidsUser = '0';
  if (s?.runAsUsername) gidsUser = s.runAsUsername;
  else if (s?.runAsUser) gidsUser = String(s.runAsUser.value);
  opts.push(async (spec, ctx) => {
    const p = ensureProcess(spec);
    const before = p.user.additionalGids ?? [];
    await oci.withAdditionalGIDs(gidsUser)(spec, ctx);
    p.user.additionalGids = mergeGids(p.user.additionalGids ?? [], before);
  });
  // After the user's, which resets the additional groups.
  const supplemental = s?.supplementalGroups ?? [];
  opts.push((spec) => {
    const p = ensureProcess(spec);
    const merged = mergeGids(p.user.additionalGids ?? [], supplemental);
    if (merged.length > 0) p.user.additionalGids = merged;
  });
  return opts;
}

/** The OCI spec of a container (root.path `rootfs`, relative to the bundle, as containerd's CRI writes it). */
export async function containerSpec(input: ContainerSpecInput): Promise<Spec> {
  return oci.generateSpec(
    { namespace: 'k8s.io', id: input.id, rootfs: input.rootfs },
    ...containerSpecOpts(input),
  );
}
