import { performance } from 'node:perf_hooks';
import { type Context, FailedPreconditionError, isNotFound, UnknownError, type wire } from '@berth/api';
import type { oci } from '@berth/client';
import type { ContainerRecord, SandboxRecord } from '../records';
import type { CriService } from '../service';
import { type CgroupFigures, CgroupParseError, CgroupReader, sumFigures } from './cgroup';
import { CpuSampler, interfaceCounters, matchLabels, memoryUsage } from './figures';

/** The pod interface containerd reports (its defaultIfName). */
export const POD_INTERFACE = 'eth0';

export interface StatsOptions {
  /** Where cgroups and /proc are read (tests point them at recorded trees). */
  cgroups?: CgroupReader;
  proc?: string;
}

/** Nanoseconds since the epoch, finer than Date.now()'s milliseconds (rates divide by the interval). */
function nowNs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1e6);
}

/**
 * ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats, from the
 * cgroups of the containers and pods (read directly, not through the shims' Metrics), the
 * snapshotter's usage of each container's writable layer, and the pod's interface counters.
 */
export class StatsManager {
  private readonly cgroups: CgroupReader;
  private readonly proc: string;
  private readonly containerCpu = new CpuSampler();
  private readonly sandboxCpu = new CpuSampler();

  constructor(
    private readonly cri: CriService,
    opts: StatsOptions = {},
  ) {
    this.proc = opts.proc ?? '/proc';
    this.cgroups = opts.cgroups ?? new CgroupReader({ proc: this.proc });
  }

  async containerStats(
    ctx: Context,
    req: wire.cri.ContainerStatsRequest,
  ): Promise<wire.cri.ContainerStatsResponse> {
    const rec = this.cri.containers.get(req.containerId);
    return { stats: await this.oneContainer(ctx, rec, nowNs()) };
  }

  async listContainerStats(
    ctx: Context,
    req: wire.cri.ListContainerStatsRequest,
  ): Promise<wire.cri.ListContainerStatsResponse> {
    const at = nowNs();
    this.forgetGone();
    const stats = await Promise.all(
      this.selectContainers(req.filter).map((r) => this.oneContainer(ctx, r, at)),
    );
    return { stats };
  }

  async podSandboxStats(
    ctx: Context,
    req: wire.cri.PodSandboxStatsRequest,
  ): Promise<wire.cri.PodSandboxStatsResponse> {
    const rec = this.cri.sandboxes.get(req.podSandboxId);
    if (rec.state !== 'SANDBOX_READY')
      throw new FailedPreconditionError(`pod sandbox "${rec.id}" is not ready: no stats of a stopped pod`);
    return { stats: await this.oneSandbox(ctx, rec, nowNs()) };
  }

  async listPodSandboxStats(
    ctx: Context,
    req: wire.cri.ListPodSandboxStatsRequest,
  ): Promise<wire.cri.ListPodSandboxStatsResponse> {
    const at = nowNs();
    this.forgetGone();
    const f = req.filter;
    const id = f?.id ? this.normalize(this.cri.sandboxes, f.id) : '';
    const pods = this.cri.sandboxes
      .list()
      .filter((s) => s.state === 'SANDBOX_READY')
      .filter((s) => id === '' || s.id === id)
      .filter((s) => matchLabels(f?.labelSelector, s.config.labels ?? {}));
    return { stats: await Promise.all(pods.map((s) => this.oneSandbox(ctx, s, at))) };
  }

  /** A filter's id may be a unique prefix (containerd's truncindex); one that names nothing matches nothing. */
  private normalize(index: { find(id: string): { id: string } | undefined }, id: string): string {
    try {
      return index.find(id)?.id ?? id;
    } catch {
      return id;
    }
  }

  private selectContainers(f: wire.cri.ContainerStatsFilter | undefined): ContainerRecord[] {
    const id = f?.id ? this.normalize(this.cri.containers, f.id) : '';
    const pod = f?.podSandboxId ? this.normalize(this.cri.sandboxes, f.podSandboxId) : '';
    return this.cri.containers
      .list()
      .filter((c) => id === '' || c.id === id)
      .filter((c) => pod === '' || c.sandboxId === pod)
      .filter((c) => matchLabels(f?.labelSelector, c.config.labels ?? {}));
  }

  private forgetGone(): void {
    this.containerCpu.retain((id) => this.cri.containers.find(id)?.id === id);
    this.sandboxCpu.retain((id) => this.cri.sandboxes.find(id)?.id === id);
  }

  private async oneContainer(
    ctx: Context,
    rec: ContainerRecord,
    at: number,
  ): Promise<wire.cri.ContainerStats> {
    const c = await this.cri.deps.containers.get(ctx, rec.id).catch((e) => {
      if (isNotFound(e)) return undefined; // removed meanwhile
      throw e;
    });
    const stats: wire.cri.ContainerStats = {
      attributes: {
        id: rec.id,
        metadata: rec.config.metadata,
        labels: rec.config.labels ?? {},
        annotations: rec.config.annotations ?? {},
      },
      cpu: undefined,
      memory: undefined,
      writableLayer: await this.writableLayer(ctx, rec, c, at),
    };
    const figures = await this.containerFigures(
      rec,
      c?.spec ? (JSON.parse(c.spec.value.toString()) as oci.Spec) : undefined,
    );
    if (figures?.cpuUsageNs !== undefined)
      stats.cpu = this.containerCpu.sample(rec.id, figures.cpuUsageNs, at);
    if (figures?.memory) stats.memory = memoryUsage(figures.memory, at);
    return stats;
  }

  /** The snapshotter's usage of the container's snapshot (its own layer); zeros when there is none, as containerd. */
  private async writableLayer(
    ctx: Context,
    rec: ContainerRecord,
    c: { snapshotter: string; snapshotKey: string } | undefined,
    at: number,
  ): Promise<wire.cri.FilesystemUsage> {
    const name = c?.snapshotter || this.cri.config.snapshotter;
    let used = { size: 0, inodes: 0 };
    try {
      used = await this.cri.deps.snapshotter(name).usage(ctx, c?.snapshotKey || rec.id);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    return {
      timestamp: at,
      fsId: { mountpoint: this.cri.deps.snapshotterRoot(name) },
      usedBytes: { value: used.size },
      inodesUsed: { value: used.inodes },
    };
  }

  /**
   * A running container's cgroup figures: its cgroup as its process shows it (what runc made
   * of the spec's path), else the spec's cgroupsPath. Undefined when it does not run or its
   * cgroup went away meanwhile (it exited).
   */
  private async containerFigures(
    rec: ContainerRecord,
    spec: oci.Spec | undefined,
  ): Promise<CgroupFigures | undefined> {
    if (rec.state !== 'CONTAINER_RUNNING') return undefined;
    try {
      const loc =
        (await this.cgroups.ofPid(rec.pid)) ??
        (spec?.linux?.cgroupsPath ? await this.cgroups.ofPath(spec.linux.cgroupsPath) : undefined);
      return loc ? await this.cgroups.read(loc) : undefined;
    } catch (e) {
      throw this.wrap(e, `container "${rec.id}"`);
    }
  }

  private wrap(e: unknown, what: string): unknown {
    if (e instanceof CgroupParseError)
      return new UnknownError(`failed to read the cgroup of ${what}: ${e.message}`);
    return e;
  }

  private async oneSandbox(ctx: Context, rec: SandboxRecord, at: number): Promise<wire.cri.PodSandboxStats> {
    const containers = this.cri.containers.list().filter((c) => c.sandboxId === rec.id);
    const [figures, containerStats, net] = await Promise.all([
      this.sandboxFigures(rec, containers),
      Promise.all(containers.map((c) => this.oneContainer(ctx, c, at))),
      rec.netnsPath !== ''
        ? interfaceCounters(this.proc, rec.pid, POD_INTERFACE)
        : Promise.resolve(undefined),
    ]);
    const linux: wire.cri.LinuxPodSandboxStats = {
      cpu: undefined,
      memory: undefined,
      network: undefined,
      process: undefined,
      containers: containerStats,
    };
    if (figures.pod?.cpuUsageNs !== undefined)
      linux.cpu = this.sandboxCpu.sample(rec.id, figures.pod.cpuUsageNs, at);
    if (figures.pod?.memory) linux.memory = memoryUsage(figures.pod.memory, at);
    if (net) {
      const ifaceUsage: wire.cri.NetworkInterfaceUsage = {
        name: POD_INTERFACE,
        rxBytes: { value: net.rxBytes },
        rxErrors: { value: net.rxErrors },
        txBytes: { value: net.txBytes },
        txErrors: { value: net.txErrors },
      };
      linux.network = { timestamp: at, defaultInterface: ifaceUsage, interfaces: [] };
    }
    linux.process = { timestamp: at, processCount: { value: figures.processes } };
    return {
      attributes: {
        id: rec.id,
        metadata: rec.config.metadata,
        labels: rec.config.labels ?? {},
        annotations: rec.config.annotations ?? {},
      },
      linux,
      windows: undefined,
    };
  }

  /**
   * The pod's figures: its cgroup parent's (where the kubelet puts the pod) when it has one;
   * else the sum of its pause container's and running containers' cgroups (containerd
   * answers an error for such a pod). The process count is the processes of the pod's
   * running containers, the pause process left out, as containerd counts their tasks' pids.
   */
  private async sandboxFigures(
    rec: SandboxRecord,
    containers: ContainerRecord[],
  ): Promise<{ pod: CgroupFigures | undefined; processes: number }> {
    try {
      const running = containers.filter((c) => c.state === 'CONTAINER_RUNNING');
      const perContainer = (
        await Promise.all(
          running.map(async (c) => {
            const loc = await this.cgroups.ofPid(c.pid);
            return loc ? this.cgroups.read(loc) : undefined;
          }),
        )
      ).filter((f): f is CgroupFigures => f !== undefined);
      const processes = perContainer.reduce((n, f) => n + (f.processes ?? 0), 0);
      const parent = rec.config.linux?.cgroupParent ?? '';
      if (parent !== '')
        return { pod: await this.cgroups.read(await this.cgroups.ofPath(parent)), processes };
      const pauseLoc =
        (await this.cgroups.ofPid(rec.pid)) ??
        (rec.cgroupsPath ? await this.cgroups.ofPath(rec.cgroupsPath) : undefined);
      const pause = pauseLoc ? await this.cgroups.read(pauseLoc) : undefined;
      return { pod: sumFigures(pause ? [pause, ...perContainer] : perContainer), processes };
    } catch (e) {
      throw this.wrap(e, `pod sandbox "${rec.id}"`);
    }
  }
}
