import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { InvalidArgumentError, type wire } from '@berth/api';
import { oci } from '@berth/client';
import type { RuntimeImageConfig } from '../image/resolve';
import { checkAppArmor, checkSelinux } from '../security/lsm';
import { withSeccompProfile } from '../security/seccomp';

/** containerd's guaranteed-pod OOM score: the pause process is the last the kernel kills. */
export const SANDBOX_OOM_SCORE_ADJ = -998;
/** containerd's DefaultSandboxCPUshares: a pause process needs almost nothing. */
export const SANDBOX_CPU_SHARES = 2;

/** The io.kubernetes.cri.* annotations containerd 1.6 puts in specs (pkg/cri/annotations). */
export const Annotations = {
  containerType: 'io.kubernetes.cri.container-type',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxLogDir: 'io.kubernetes.cri.sandbox-log-directory',
} as const;

export interface SandboxSpecInput {
  id: string;
  namespace: string;
  config: wire.cri.PodSandboxConfig;
  image: { name: string; config: RuntimeImageConfig };
  /** The pod's annotations its runtime's `pod_annotations` pass on. */
  podAnnotations?: Record<string, string>;
  /** The pinned network namespace; '' for a host-network pod. */
  netnsPath: string;
  /** The pod's /dev/shm mount point on the host ('' for host IPC: the host's /dev/shm). */
  shmPath: string;
  /** The pod's resolv.conf, bind-mounted read-only into the pause container too. */
  resolvConfPath: string;
  /** runc's SystemdCgroup: the cgroup parent is a slice, the path `slice:cri-containerd:id`. */
  systemdCgroup: boolean;
  restrictOomScoreAdj: boolean;
  disableCgroup: boolean;
}

/** containerd's getCgroupsPath: `<parent>/<id>` for cgroupfs, `<slice>:cri-containerd:<id>` for systemd. */
export function cgroupsPath(parent: string, id: string, systemd: boolean): string {
  if (systemd) return `${posix.basename(parent)}:cri-containerd:${id}`;
  return posix.join(parent, id);
}

/** containerd's WithPodOOMScoreAdj: with restrict_oom_score_adj a pod never gets below the daemon's own score. */
export async function sandboxOomScoreAdj(restrict: boolean): Promise<number> {
  if (!restrict) return SANDBOX_OOM_SCORE_ADJ;
  const own = Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim());
  return Math.max(SANDBOX_OOM_SCORE_ADJ, Number.isFinite(own) ? own : 0);
}

function removeNamespace(spec: oci.Spec, type: string): void {
  if (spec.linux?.namespaces) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== type);
}

/**
 * The pause container's spec as containerd 1.6's sandboxContainerSpec builds it: the
 * default spec without /run, without default rlimits or seccomp, a read-only root, the
 * image's entrypoint and environment, the pod's namespaces, hostname, sysctls, cgroup,
 * OOM score, /dev/shm and resolv.conf, and the io.kubernetes.cri.* annotations (what
 * `crictl inspectp` shows of containerd 1.6.20's, field for field, for the same pod).
 */
export async function sandboxSpec(input: SandboxSpecInput): Promise<oci.Spec> {
  const { id, config, image } = input;
  const meta = config.metadata!;
  const spec = oci.defaultSpec(input.namespace, id);
  const process = spec.process!;
  const linux = spec.linux!;
  spec.mounts = (spec.mounts ?? []).filter((m) => m.destination !== '/run');
  process.rlimits = undefined;
  spec.root = { path: 'rootfs', readonly: true };

  const args = [...(image.config.Entrypoint ?? []), ...(image.config.Cmd ?? [])];
  if (args.length === 0)
    throw new InvalidArgumentError(`no command specified by sandbox image ${JSON.stringify(image.name)}`);
  process.args = args;
  if (image.config.Env?.length) process.env = [...image.config.Env];
  if (image.config.WorkingDir) process.cwd = image.config.WorkingDir;

  const sec = config.linux?.securityContext;
  if (sec?.runAsUser) process.user.uid = sec.runAsUser.value;
  if (sec?.runAsGroup) process.user.gid = sec.runAsGroup.value;
  if (sec?.supplementalGroups.length) process.user.additionalGids = [...sec.supplementalGroups];

  const ns = sec?.namespaceOptions;
  if (ns?.network === 'NODE') {
    // The host's UTS namespace too, whose hostname a pod must not change (runc refuses to).
    removeNamespace(spec, 'network');
    removeNamespace(spec, 'uts');
  } else {
    if (config.hostname) spec.hostname = config.hostname;
    linux.namespaces = (linux.namespaces ?? []).map((n) =>
      n.type === 'network' ? { type: 'network', path: input.netnsPath } : n,
    );
  }
  if (ns?.pid === 'NODE') removeNamespace(spec, 'pid');
  if (ns?.ipc === 'NODE') removeNamespace(spec, 'ipc');

  // The pod's /dev/shm over the default one (the daemon's tmpfs, or the host's), and its resolv.conf.
  spec.mounts.push(
    { destination: '/dev/shm', type: 'bind', source: input.shmPath || '/dev/shm', options: ['rbind', 'ro'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: input.resolvConfPath, options: ['rbind', 'ro'] },
  );

  // The pause process gets the pod's seccomp profile too (containerd's sandboxContainerSpecOpts);
  // AppArmor and SELinux are checked, never applied (see security/lsm.ts).
  const field = `pod "${meta.name}" linux.security_context`;
  checkSelinux(field, sec?.selinuxOptions);
  checkAppArmor(field, sec?.apparmor, '', sec?.privileged ?? false);
  await withSeccompProfile({
    field,
    profile: sec?.seccomp,
    deprecatedPath: sec?.seccompProfilePath ?? '',
    privileged: sec?.privileged ?? false,
  })(spec);

  const sysctls = config.linux?.sysctls ?? {};
  if (Object.keys(sysctls).length > 0) linux.sysctl = { ...sysctls };

  const parent = config.linux?.cgroupParent ?? '';
  if (parent !== '') linux.cgroupsPath = cgroupsPath(parent, id, input.systemdCgroup);
  if (!input.disableCgroup) {
    linux.resources ??= {};
    linux.resources.cpu = { ...linux.resources.cpu, shares: SANDBOX_CPU_SHARES };
  }
  process.oomScoreAdj = await sandboxOomScoreAdj(input.restrictOomScoreAdj);

  spec.annotations = {
    ...spec.annotations,
    ...input.podAnnotations,
    [Annotations.containerType]: 'sandbox',
    [Annotations.sandboxId]: id,
    [Annotations.sandboxNamespace]: meta.namespace,
    [Annotations.sandboxUid]: meta.uid,
    [Annotations.sandboxName]: meta.name,
    [Annotations.sandboxLogDir]: config.logDirectory,
  };
  return spec;
}
