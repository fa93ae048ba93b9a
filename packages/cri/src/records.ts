import type { wire } from '@berth/api';

/** A pod sandbox as the plugin keeps it (persisted by the sandbox manager; fields may grow). */
export interface SandboxRecord {
  id: string;
  /** <name>_<namespace>_<uid>_<attempt> (sandboxName()): unique while the pod exists. */
  name: string;
  config: wire.cri.PodSandboxConfig;
  /** As RunPodSandbox named it ('' for the default: `config.runtimes.get(h || config.defaultRuntimeName)`). */
  runtimeHandler: string;
  /** Nanoseconds since the epoch. */
  createdAt: number;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  /** The pinned network namespace ('' for a host-network pod). */
  netnsPath: string;
  ip: string;
  additionalIps: string[];
  /** The pause process (0 once it exited). */
  pid: number;
  /** The runtime handler's containerd runtime type (its containers run under the same). */
  runtimeType: string;
  /** The sandbox image as configured, and its id (config digest). */
  image: string;
  imageId: string;
  /** Files the pod's containers bind-mount: `<cri root>/sandboxes/<id>/{hostname,hosts,resolv.conf}`. */
  hostnamePath: string;
  hostsPath: string;
  resolvConfPath: string;
  /** The pod's /dev/shm: a tmpfs at `<cri state>/sandboxes/<id>/shm`; '' for a host-IPC pod (the host's /dev/shm). */
  shmPath: string;
  /** The pause container's cgroups path (`<cgroup_parent>/<id>`, or the default `/k8s.io/<id>`). */
  cgroupsPath: string;
  /** Exit status of the pause process once it exited, and when (ns since the epoch; 0: not yet). */
  exitCode: number;
  exitedAt: number;
  /** True once the pod's network was torn down (CNI DEL done, netns removed): its IP is no longer reported. */
  networkClosed: boolean;
  /** go-cni's Result of the pod's CNI ADD (verbose PodSandboxStatus' `cniResult`); null for host network. */
  cniResult: unknown;
}

/** A container as the plugin keeps it (persisted by the container manager; fields may grow). */
export interface ContainerRecord {
  id: string;
  sandboxId: string;
  /** <container>_<pod>_<namespace>_<uid>_<attempt> (containerName()). */
  name: string;
  config: wire.cri.ContainerConfig;
  /** The image's id (config digest), what ContainerStatus reports as image_ref's source. */
  imageId: string;
  imageRef: string;
  /** The image's normalized name (ContainerStatus.image). */
  imageName: string;
  /** The image's StopSignal ('' for SIGTERM). */
  stopSignal: string;
  /** The absolute log path ('' when the kubelet gave none). */
  logPath: string;
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
  /** Nanoseconds since the epoch; 0 when not yet. */
  createdAt: number;
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  reason: string;
  message: string;
  pid: number;
}

/** A pod's name as containerd 1.6's makeSandboxName spells it: `<name>_<namespace>_<uid>_<attempt>`. */
export function sandboxName(m: wire.cri.PodSandboxMetadata): string {
  return [m.name, m.namespace, m.uid, String(m.attempt)].join('_');
}

/** A container's name as containerd 1.6's makeContainerName spells it: `<container>_<pod>_<namespace>_<uid>_<attempt>`. */
export function containerName(c: wire.cri.ContainerMetadata, s: wire.cri.PodSandboxMetadata): string {
  return [c.name, s.name, s.namespace, s.uid, String(c.attempt)].join('_');
}
