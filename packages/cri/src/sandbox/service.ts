import { randomBytes, randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import {
  type AnyValue,
  type Container,
  type Context,
  InvalidArgumentError,
  isNotFound,
  LEASE_EXPIRE_LABEL,
  UnknownError,
  type wire,
  writeFileAtomic,
} from '@berth/api';
import { oci } from '@berth/client';
import {
  Cni,
  createNetns,
  type NetworkAttachment,
  type PortMapping,
  releaseNetnsDir,
  removeNetns,
} from '@berth/cni';
import { passedPodAnnotations, type RuntimeHandler } from '../config';
import type { ResolvedImage } from '../image/resolve';
import { type SandboxRecord, sandboxName } from '../records';
import type { CriService } from '../service';
import { mountShm, type SandboxFiles, sandboxFiles, unmountShm, writeSandboxFiles } from './files';
import { goCniResult, goJson } from './info';
import { runtimeOptions, systemdCgroup } from './runtime-options';
import { cgroupsPath as makeCgroupsPath, sandboxSpec } from './spec';

/** containerd's label telling sandboxes from containers among the k8s.io container records. */
export const KIND_LABEL = 'io.cri-containerd.kind';
/** The container record's extension holding the sandbox's metadata (containerd's key). */
export const SANDBOX_METADATA_EXTENSION = 'io.cri-containerd.sandbox.metadata';
const SANDBOX_METADATA_TYPE = 'berth.cri.v1.SandboxMetadata';
/** containerd's default for netns pins when netns_mounts_under_state_dir is off. */
export const DEFAULT_NETNS_DIR = '/var/run/netns';

const SIGKILL = 9;

/** What of a record never changes: kept in the container record's extension. */
type SandboxMetadata = Omit<
  SandboxRecord,
  'state' | 'pid' | 'ip' | 'additionalIps' | 'exitCode' | 'exitedAt' | 'networkClosed' | 'cniResult'
>;
/** What changes: kept in `<cri root>/sandboxes/<id>/status.json`. */
type SandboxStatusFile = Pick<
  SandboxRecord,
  'state' | 'pid' | 'ip' | 'additionalIps' | 'exitCode' | 'exitedAt' | 'networkClosed' | 'cniResult'
>;

const nowNs = (): number => Date.now() * 1_000_000;

function requireConfig(config: wire.cri.PodSandboxConfig | undefined): wire.cri.PodSandboxConfig {
  if (!config) throw new InvalidArgumentError('sandbox config must not be empty');
  const m = config.metadata;
  if (!m) throw new InvalidArgumentError('sandbox config must include metadata');
  for (const k of ['name', 'uid', 'namespace'] as const)
    if (!m[k]) throw new InvalidArgumentError(`sandbox config metadata: ${k} must not be empty`);
  return config;
}

/** The pod's port mappings in CNI's words (containerd's toCNIPortMappings: host port 0 is no mapping). */
function portMappings(config: wire.cri.PodSandboxConfig): PortMapping[] {
  return config.portMappings
    .filter((p) => p.hostPort > 0)
    .map((p) => ({
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      protocol: p.protocol.toLowerCase() as PortMapping['protocol'],
      ...(p.hostIp ? { hostIP: p.hostIp } : {}),
    }));
}

/** The pod's IPs, IPv4 first (containerd's selectPodIPs), from the default network's interface. */
export function podIps(attachments: readonly NetworkAttachment[]): string[] {
  const first = attachments[0];
  if (!first) return [];
  const ips = first.ips.map((ip) => ({ v: ip.version, addr: ip.address.split('/')[0] }));
  return [...ips.filter((i) => i.v === '4'), ...ips.filter((i) => i.v !== '4')].map((i) => i.addr);
}

/** Pod sandboxes: a pause container holding the pod's namespaces, networked through CNI. */
export class SandboxManager {
  readonly cni: Cni;
  /** Each pod's operations run one at a time (run, stop, remove, exit handling). */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly closing = new AbortController();
  private readonly watches = new Set<Promise<void>>();

  constructor(private readonly cri: CriService) {
    // Every ready pod's exit watch listens on this signal for as long as it runs: no leak past
    // Node's default of 10, only many pods.
    setMaxListeners(0, this.closing.signal);
    const { config, deps } = cri;
    this.cni = new Cni({
      binDirs: config.cni.binDirs,
      confDir: config.cni.confDir,
      cacheDir: join(deps.root, 'cni-cache'),
      maxConfNum: config.cni.maxConfNum,
      loopback: true,
    });
  }

  private get deps() {
    return this.cri.deps;
  }

  private rootDir(id: string): string {
    return join(this.deps.root, 'sandboxes', id);
  }

  private stateDir(id: string): string {
    return join(this.deps.state, 'sandboxes', id);
  }

  private netnsDir(): string {
    return this.cri.config.netnsMountsUnderStateDir ? join(this.deps.state, 'netns') : DEFAULT_NETNS_DIR;
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.locks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  private cniArgs(rec: Pick<SandboxRecord, 'id' | 'config'>): Record<string, string> {
    const m = rec.config.metadata!;
    return {
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: m.namespace,
      K8S_POD_NAME: m.name,
      K8S_POD_INFRA_CONTAINER_ID: rec.id,
      K8S_POD_UID: m.uid,
    };
  }

  private async saveStatus(rec: SandboxRecord): Promise<void> {
    const status: SandboxStatusFile = {
      state: rec.state,
      pid: rec.pid,
      ip: rec.ip,
      additionalIps: rec.additionalIps,
      exitCode: rec.exitCode,
      exitedAt: rec.exitedAt,
      networkClosed: rec.networkClosed,
      cniResult: rec.cniResult,
    };
    await mkdir(this.rootDir(rec.id), { recursive: true });
    await writeFileAtomic(join(this.rootDir(rec.id), 'status.json'), JSON.stringify(status));
  }

  /** Reloads the pods of an earlier run from their container records and status files. */
  async recover(ctx: Context): Promise<void> {
    await this.cni.load().catch((e) => this.deps.log.warn(`cni config load: ${(e as Error).message}`));
    const records = await this.deps.containers.list(ctx, [`labels."${KIND_LABEL}"==sandbox`]);
    for (const c of records) {
      const ext = c.extensions[SANDBOX_METADATA_EXTENSION];
      if (!ext) {
        this.deps.log.warn(`sandbox container ${c.id} has no ${SANDBOX_METADATA_EXTENSION}, skipped`);
        continue;
      }
      let rec: SandboxRecord;
      try {
        const meta = JSON.parse(ext.value.toString()) as SandboxMetadata;
        let status: SandboxStatusFile | undefined;
        try {
          status = JSON.parse(await readFile(join(this.rootDir(c.id), 'status.json'), 'utf8'));
        } catch {
          status = undefined;
        }
        rec = {
          ...meta,
          state: 'SANDBOX_NOTREADY',
          pid: 0,
          ip: status?.ip ?? '',
          additionalIps: status?.additionalIps ?? [],
          exitCode: status?.exitCode ?? 0,
          exitedAt: status?.exitedAt ?? 0,
          networkClosed: status?.networkClosed ?? meta.netnsPath === '',
          cniResult: status?.cniResult ?? null,
        };
      } catch (e) {
        this.deps.log.warn(`sandbox ${c.id}: unreadable metadata, skipped: ${(e as Error).message}`);
        continue;
      }
      const task = await this.deps.tasks.get(ctx, { containerId: c.id, execId: '' }).catch(() => undefined);
      const proc = task?.process;
      if (proc && (proc.status === 'RUNNING' || proc.status === 'PAUSED' || proc.status === 'CREATED')) {
        rec.state = 'SANDBOX_READY';
        rec.pid = proc.pid;
      } else if (proc) {
        // The pause process exited while the daemon was away.
        rec.exitCode = proc.exitStatus;
        rec.exitedAt = rec.exitedAt || nowNs();
        await this.deps.tasks.delete(ctx, { containerId: c.id }).catch(() => {});
      }
      this.cri.sandboxNames.reserve(rec.name, rec.id);
      this.cri.sandboxes.add(rec);
      await this.saveStatus(rec).catch(() => {});
      if (rec.state === 'SANDBOX_READY') this.watch(ctx, rec);
    }
  }

  /** NetworkReady for Status: the CNI config is loaded again, as containerd's conf dir watch would. */
  async networkStatus(): Promise<{
    ready: boolean;
    reason: string;
    message: string;
    lastLoadStatus: string;
  }> {
    await this.cni.load().catch(() => {});
    return this.cni.status();
  }

  /** The handler RunPodSandbox names ('' is the default); Unknown otherwise, worded and coded as containerd's. */
  private handler(name: string): RuntimeHandler {
    const h = this.cri.config.runtimes.get(name || this.cri.config.defaultRuntimeName);
    if (!h) throw new UnknownError(`failed to get sandbox runtime: no runtime for "${name}" is configured`);
    return h;
  }

  async run(ctx: Context, req: wire.cri.RunPodSandboxRequest): Promise<wire.cri.RunPodSandboxResponse> {
    const config = requireConfig(req.config);
    const id = randomBytes(32).toString('hex');
    const name = sandboxName(config.metadata!);
    try {
      this.cri.sandboxNames.reserve(name, id);
    } catch (e) {
      (e as Error).message = `failed to reserve sandbox name "${name}": ${(e as Error).message}`;
      throw e;
    }
    const undo: (() => Promise<unknown>)[] = [async () => this.cri.sandboxNames.release(name)];
    // Work started beside the main line (the CNI ADD): settled before anything is undone.
    const inflight: Promise<unknown>[] = [];
    try {
      return await this.locked(id, () =>
        this.create(ctx, id, name, config, req.runtimeHandler, undo, inflight),
      );
    } catch (e) {
      await Promise.allSettled(inflight);
      for (const fn of undo.reverse()) {
        await fn().catch((err) =>
          this.deps.log.warn(`sandbox ${id}: undoing a failed run: ${(err as Error).message}`),
        );
      }
      throw e;
    }
  }

  private async create(
    ctx: Context,
    id: string,
    name: string,
    config: wire.cri.PodSandboxConfig,
    handlerName: string,
    undo: (() => Promise<unknown>)[],
    inflight: Promise<unknown>[],
  ): Promise<wire.cri.RunPodSandboxResponse> {
    const { deps } = this;
    const handler = this.handler(handlerName);
    const image = await this.cri.images.ensure(ctx, this.cri.config.sandboxImage);
    const nsOpts = config.linux?.securityContext?.namespaceOptions;
    const hostNetwork = nsOpts?.network === 'NODE';
    const hostIpc = nsOpts?.ipc === 'NODE';

    const rootDir = this.rootDir(id);
    const stateDir = this.stateDir(id);
    await mkdir(rootDir, { recursive: true, mode: 0o755 });
    await mkdir(stateDir, { recursive: true, mode: 0o755 });
    undo.push(() => rm(rootDir, { recursive: true, force: true }));
    undo.push(() => rm(stateDir, { recursive: true, force: true }));

    // What the pause process needs on the host (its network namespace, /dev/shm, the
    // hostname/hosts/resolv.conf files) is made beside the snapshot, the spec and the
    // record, which need only its paths: all of it is awaited before the task is made.
    const ready: Promise<unknown>[] = [];
    const started = <T>(p: Promise<T>): Promise<T> => {
      inflight.push(p);
      ready.push(p);
      // Handled here; awaited by the main line, or settled before anything is undone.
      p.catch(() => {});
      return p;
    };
    let netnsPath = '';
    let attachments: Promise<NetworkAttachment[]> = Promise.resolve([]);
    if (!hostNetwork) {
      if (!this.cni.status().ready) await this.cni.load();
      const net = this.cni.status();
      if (!net.ready)
        // containerd's words and code (Unknown) for a node whose CNI config is not there yet
        throw new UnknownError(`failed to setup network for sandbox "${id}": cni plugin not initialized`);
      const netnsDir = this.netnsDir();
      netnsPath = join(resolve(netnsDir), `cni-${randomUUID()}`);
      const pinned = started(createNetns(netnsDir, basename(netnsPath)));
      // A path never pinned is no error to removeNetns.
      undo.push(() => removeNetns(netnsPath));
      const opts = { args: this.cniArgs({ id, config }), portMappings: portMappings(config) };
      undo.push(() => this.cni.remove(id, netnsPath, opts));
      // The pause process needs the namespace, not its addresses: the plugins run while the
      // pause container is made and started (containerd runs them first, one after the other).
      attachments = pinned.then(() => this.cni.setup(id, netnsPath, opts));
      inflight.push(attachments);
      attachments.catch(() => {});
    }

    const files = sandboxFiles(rootDir);
    started(writeSandboxFiles(rootDir, config));
    const shmPath = hostIpc ? '' : join(stateDir, 'shm');
    if (shmPath) {
      undo.push(() => unmountShm(shmPath));
      started(mountShm(shmPath));
    }

    // The snapshot is held by a lease until the container record references it, as
    // containerd's client does, so a garbage collection in between cannot take it.
    const lease = await deps.leases.create(ctx, {
      labels: { [LEASE_EXPIRE_LABEL]: new Date(Date.now() + 3600_000).toISOString() },
    });
    const leased: Context = { ...ctx, lease: lease.id };
    try {
      return await this.createLeased(
        ctx,
        leased,
        id,
        name,
        config,
        handlerName,
        handler,
        image,
        {
          hostNetwork,
          netnsPath,
          attachments,
          rootDir,
          files,
          shmPath,
          ready: Promise.all(ready),
        },
        undo,
      );
    } finally {
      await deps.leases.delete(ctx, lease.id).catch(() => {});
    }
  }

  private async createLeased(
    ctx: Context,
    leased: Context,
    id: string,
    name: string,
    config: wire.cri.PodSandboxConfig,
    handlerName: string,
    handler: RuntimeHandler,
    image: ResolvedImage,
    net: {
      hostNetwork: boolean;
      netnsPath: string;
      attachments: Promise<NetworkAttachment[]>;
      rootDir: string;
      files: SandboxFiles;
      shmPath: string;
      /** The namespace, files and /dev/shm being made: the task waits for them. */
      ready: Promise<unknown>;
    },
    undo: (() => Promise<unknown>)[],
  ): Promise<wire.cri.RunPodSandboxResponse> {
    const { deps } = this;
    const { hostNetwork, netnsPath, files, shmPath } = net;
    const snapshotter = deps.snapshotter(this.cri.config.snapshotter);
    undo.push(() => snapshotter.remove(ctx, id));
    const rootfs = await snapshotter.prepare(leased, id, image.chainId);

    const cgroupParent = config.linux?.cgroupParent ?? '';
    const spec = await sandboxSpec({
      id,
      namespace: ctx.namespace ?? 'k8s.io',
      config,
      image: { name: image.record.name, config: image.config.config ?? {} },
      podAnnotations: passedPodAnnotations(handler, config.annotations),
      netnsPath,
      shmPath,
      resolvConfPath: files.resolvConf,
      systemdCgroup: systemdCgroup(handler),
      restrictOomScoreAdj: this.cri.config.restrictOomScoreAdj,
      disableCgroup: this.cri.config.disableCgroup,
    });

    const rec: SandboxRecord = {
      id,
      name,
      config,
      runtimeHandler: handlerName,
      runtimeType: handler.type,
      createdAt: nowNs(),
      state: 'SANDBOX_NOTREADY',
      netnsPath,
      ip: '',
      additionalIps: [],
      pid: 0,
      image: this.cri.config.sandboxImage,
      imageId: image.id,
      hostnamePath: files.hostname,
      hostsPath: files.hosts,
      resolvConfPath: files.resolvConf,
      shmPath,
      cgroupsPath: cgroupParent
        ? makeCgroupsPath(cgroupParent, id, systemdCgroup(handler))
        : (spec.linux?.cgroupsPath ?? ''),
      exitCode: 0,
      exitedAt: 0,
      networkClosed: hostNetwork,
      cniResult: null,
    };
    const {
      state: _s,
      pid: _p,
      ip: _i,
      additionalIps: _a,
      exitCode: _e,
      exitedAt: _x,
      networkClosed: _n,
      cniResult: _c,
      ...meta
    } = rec;
    const options = runtimeOptions(handler);
    const extension: AnyValue = { typeUrl: SANDBOX_METADATA_TYPE, value: Buffer.from(JSON.stringify(meta)) };
    undo.push(() => deps.containers.delete(ctx, id));
    await deps.containers.create(leased, {
      id,
      labels: { ...(image.config.config?.Labels ?? {}), ...config.labels, [KIND_LABEL]: 'sandbox' },
      image: image.record.name,
      runtime: { name: handler.type, ...(options ? { options } : {}) },
      spec: oci.specToAny(spec),
      snapshotter: this.cri.config.snapshotter,
      snapshotKey: id,
      extensions: { [SANDBOX_METADATA_EXTENSION]: extension },
      sandbox: '',
    });
    await Promise.all([
      snapshotter.update(ctx, { name: id, labels: {} }, ['labels.containerd.io/gc.root']).catch(() => {}),
      this.saveStatus(rec),
      net.ready,
    ]);

    undo.push(async () => {
      await deps.tasks.kill(ctx, { containerId: id, execId: '', signal: SIGKILL, all: true }).catch(() => {});
      await deps.tasks.delete(ctx, { containerId: id });
    });
    const created = await deps.tasks.create(ctx, {
      containerId: id,
      rootfs: rootfs.map((m) => ({
        type: m.type,
        source: m.source,
        target: m.target ?? '',
        options: m.options,
      })),
      stdin: '',
      stdout: '',
      stderr: '',
      terminal: false,
      checkpoint: undefined,
      options: undefined,
      runtimePath: handler.path,
    });
    await deps.tasks.start(ctx, { containerId: id, execId: '' });
    rec.pid = created.pid;
    const attachments = await net.attachments;
    const ips = podIps(attachments);
    rec.ip = ips[0] ?? '';
    rec.additionalIps = ips.slice(1);
    rec.cniResult = hostNetwork ? null : goCniResult(attachments);
    rec.state = 'SANDBOX_READY';
    await this.saveStatus(rec);
    this.cri.sandboxes.add(rec);
    this.watch(ctx, rec);
    undo.length = 0;
    // containerd 1.7 sends both, with the pod's id as the container's, once its task runs.
    this.cri.events.emit(id, id, 'CONTAINER_CREATED_EVENT');
    this.cri.events.emit(id, id, 'CONTAINER_STARTED_EVENT');
    return { podSandboxId: id };
  }

  /** Waits for the pause process's exit; the pod is NOTREADY then (containerd's handleSandboxExit). */
  private watch(callCtx: Context, rec: SandboxRecord): void {
    const signal = this.closing.signal;
    // Not the RunPodSandbox call's cancellation: the watch outlives the call, until the daemon closes.
    const ctx: Context = { namespace: callCtx.namespace, signal };
    const p = (async () => {
      let res: wire.tasks.WaitResponse;
      try {
        res = await this.deps.tasks.wait(ctx, { containerId: rec.id, execId: '' });
      } catch {
        return; // the daemon is closing, or the task is gone (stop/remove handle it)
      }
      if (signal.aborted) return;
      await this.locked(rec.id, async () => {
        await this.markExited(ctx, rec, res.exitStatus, res.exitedAt);
      }).catch((e) => this.deps.log.warn(`sandbox ${rec.id}: exit: ${(e as Error).message}`));
    })();
    this.watches.add(p);
    void p.finally(() => this.watches.delete(p));
  }

  private async markExited(
    ctx: Context,
    rec: SandboxRecord,
    exitStatus: number,
    exitedAt?: { seconds: number; nanos: number },
  ): Promise<void> {
    const stopped = rec.state === 'SANDBOX_READY' || rec.pid !== 0;
    if (stopped) {
      rec.state = 'SANDBOX_NOTREADY';
      rec.pid = 0;
      rec.exitCode = exitStatus;
      rec.exitedAt = exitedAt ? exitedAt.seconds * 1e9 + exitedAt.nanos : nowNs();
    }
    await this.deps.tasks.delete(ctx, { containerId: rec.id }).catch((e) => {
      if (!isNotFound(e)) throw e;
    });
    if (this.cri.sandboxes.find(rec.id) === rec) {
      await this.saveStatus(rec);
      if (stopped) this.cri.events.emit(rec.id, rec.id, 'CONTAINER_STOPPED_EVENT');
    }
  }

  async stop(ctx: Context, req: wire.cri.StopPodSandboxRequest): Promise<wire.cri.StopPodSandboxResponse> {
    const rec = this.cri.sandboxes.get(req.podSandboxId);
    await this.cri.containerManager.stopAllInSandbox(ctx, rec.id);
    await this.locked(rec.id, () => this.stopLocked(ctx, rec));
    return {};
  }

  /** Kills the pause process, tears the network down, unmounts /dev/shm; each step is fine twice. */
  private async stopLocked(ctx: Context, rec: SandboxRecord): Promise<void> {
    const { tasks } = this.deps;
    const task = await tasks.get(ctx, { containerId: rec.id, execId: '' }).catch((e) => {
      if (isNotFound(e)) return undefined;
      throw e;
    });
    if (task?.process) {
      if (task.process.status !== 'STOPPED') {
        await tasks.kill(ctx, { containerId: rec.id, execId: '', signal: SIGKILL, all: true }).catch((e) => {
          if (!isNotFound(e)) throw e;
        });
      }
      const res = await tasks.wait(ctx, { containerId: rec.id, execId: '' }).catch((e) => {
        if (isNotFound(e)) return undefined;
        throw e;
      });
      await this.markExited(ctx, rec, res?.exitStatus ?? rec.exitCode, res?.exitedAt);
    } else if (rec.state === 'SANDBOX_READY') {
      await this.markExited(ctx, rec, rec.exitCode);
    }
    if (rec.netnsPath && !rec.networkClosed) {
      await this.cni.remove(rec.id, rec.netnsPath, {
        args: this.cniArgs(rec),
        portMappings: portMappings(rec.config),
      });
      await removeNetns(rec.netnsPath);
      rec.networkClosed = true;
      await this.saveStatus(rec);
    }
    if (rec.shmPath) await unmountShm(rec.shmPath);
  }

  async remove(
    ctx: Context,
    req: wire.cri.RemovePodSandboxRequest,
  ): Promise<wire.cri.RemovePodSandboxResponse> {
    // containerd answers OK for a pod it does not know: the kubelet retries removals.
    const rec = this.cri.sandboxes.find(req.podSandboxId);
    if (!rec) return {};
    await this.cri.containerManager.stopAllInSandbox(ctx, rec.id);
    await this.cri.containerManager.removeAllInSandbox(ctx, rec.id);
    await this.locked(rec.id, async () => {
      if (this.cri.sandboxes.find(rec.id) !== rec) return;
      await this.stopLocked(ctx, rec);
      await this.deps.tasks.delete(ctx, { containerId: rec.id }).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      await this.deps.containers.delete(ctx, rec.id).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      await this.deps
        .snapshotter(this.cri.config.snapshotter)
        .remove(ctx, rec.id)
        .catch((e) => {
          if (!isNotFound(e)) throw e;
        });
      await rm(this.stateDir(rec.id), { recursive: true, force: true });
      await rm(this.rootDir(rec.id), { recursive: true, force: true });
      this.cri.sandboxes.delete(rec.id);
      this.cri.sandboxNames.release(rec.name);
      this.cri.events.emit(rec.id, rec.id, 'CONTAINER_DELETED_EVENT');
    });
    return {};
  }

  private toStatus(rec: SandboxRecord): wire.cri.PodSandboxStatus {
    const ns = rec.config.linux?.securityContext?.namespaceOptions;
    const reportIp = rec.netnsPath !== '' && !rec.networkClosed;
    return {
      id: rec.id,
      metadata: rec.config.metadata,
      state: rec.state,
      createdAt: rec.createdAt,
      network: {
        ip: reportIp ? rec.ip : '',
        additionalIps: reportIp ? rec.additionalIps.map((ip) => ({ ip })) : [],
      },
      linux: {
        namespaces: {
          options: {
            network: ns?.network ?? 'POD',
            pid: ns?.pid ?? 'POD',
            ipc: ns?.ipc ?? 'POD',
            targetId: ns?.targetId ?? '',
            usernsOptions: ns?.usernsOptions,
          },
        },
      },
      labels: rec.config.labels,
      annotations: rec.config.annotations,
      runtimeHandler: rec.runtimeHandler,
    };
  }

  async status(
    ctx: Context,
    req: wire.cri.PodSandboxStatusRequest,
  ): Promise<wire.cri.PodSandboxStatusResponse> {
    const rec = this.cri.sandboxes.get(req.podSandboxId);
    const info: Record<string, string> = {};
    if (req.verbose) {
      let container: Container | undefined;
      try {
        container = await this.deps.containers.get(ctx, rec.id);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
      const handler = this.cri.config.runtimes.get(rec.runtimeHandler || this.cri.config.defaultRuntimeName);
      // containerd's sandboxInfo, key for key
      info.info = JSON.stringify({
        pid: rec.pid,
        // the task is deleted as soon as the pause process exits
        processStatus: rec.state === 'SANDBOX_READY' ? 'running' : 'deleted',
        netNamespaceClosed: rec.networkClosed,
        image: rec.image,
        snapshotKey: rec.id,
        snapshotter: this.cri.config.snapshotter,
        runtimeHandler: rec.runtimeHandler,
        runtimeType: rec.runtimeType,
        runtimeOptions: handler && Object.keys(handler.options).length > 0 ? handler.options : null,
        config: goJson(rec.config),
        runtimeSpec: container?.spec ? JSON.parse(container.spec.value.toString()) : null,
        cniResult: rec.cniResult,
      });
    }
    return { status: this.toStatus(rec), info, containersStatuses: [], timestamp: 0 };
  }

  async list(_ctx: Context, req: wire.cri.ListPodSandboxRequest): Promise<wire.cri.ListPodSandboxResponse> {
    const f = req.filter;
    let recs = this.cri.sandboxes.list();
    if (f?.id) {
      let match: SandboxRecord | undefined;
      try {
        match = this.cri.sandboxes.find(f.id);
      } catch {
        match = undefined; // an ambiguous prefix matches nothing, as containerd's truncindex
      }
      recs = match ? [match] : [];
    }
    if (f?.state) recs = recs.filter((r) => r.state === f.state!.state);
    const selector = Object.entries(f?.labelSelector ?? {});
    if (selector.length > 0) recs = recs.filter((r) => selector.every(([k, v]) => r.config.labels[k] === v));
    return {
      items: recs.map((r) => ({
        id: r.id,
        metadata: r.config.metadata,
        state: r.state,
        createdAt: r.createdAt,
        labels: r.config.labels,
        annotations: r.config.annotations,
        runtimeHandler: r.runtimeHandler,
      })),
    };
  }

  /** containerd writes a conflist from cni.conf_template when a pod CIDR arrives; berth has no template, it notes the CIDR. */
  async updateRuntimeConfig(_ctx: Context, req: wire.cri.UpdateRuntimeConfigRequest): Promise<void> {
    const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? '';
    if (cidr) this.deps.log.info(`pod CIDR ${cidr} (no cni.conf_template: the CNI config is not rewritten)`);
  }

  async close(): Promise<void> {
    this.closing.abort();
    await Promise.allSettled([...this.watches]);
    // Pins under our own state directory: lift the directory's self-bind once no pod holds one
    // (a restart with pods running keeps it; /run/netns is shared with `ip netns` and stays).
    if (this.cri.config.netnsMountsUnderStateDir)
      await releaseNetnsDir(this.netnsDir()).catch((e) =>
        this.deps.log.warn(`netns directory ${this.netnsDir()}: ${(e as Error).message}`),
      );
  }
}
