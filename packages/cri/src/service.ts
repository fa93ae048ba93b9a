import {
  type Context,
  grpcService,
  isNotFound,
  NotImplementedError,
  type wire,
  withNamespace,
} from '@berth/api';
import {
  type Handler,
  type HandlerOptions,
  type Log,
  type ServerStreamCall,
  type ServiceRegistrar,
  serverStream,
  unary,
} from '@berth/grpc';
import type { CriConfig } from './config';
import { ContainerManager } from './container/service';
import { CRI_NAMESPACE, type CriDeps } from './deps';
import { ContainerEvents, type ContainerEventType } from './events';
import { ImageManager } from './image/service';
import type { ContainerRecord, SandboxRecord } from './records';
import { SandboxManager } from './sandbox/service';
import { StatsManager } from './stats/service';
import { NameIndex, RecordIndex } from './store';
import { CriStreamingRuntime } from './streaming/runtime';
import { StreamServer } from './streaming/server';

export const RUNTIME_SERVICE = 'runtime.v1.RuntimeService';
export const IMAGE_SERVICE = 'runtime.v1.ImageService';
/** The CRI version this plugin speaks (VersionResponse.version, as containerd 1.6 answers). */
export const KUBE_API_VERSION = '0.1.0';
export const CRI_API_VERSION = 'v1';

export interface CriServiceOptions {
  /** berth's version, reported as the runtime's. */
  version: string;
}

/**
 * Kubernetes' CRI, runtime.v1 RuntimeService and ImageService, served on the daemon's socket
 * (containerd's plugin io.containerd.grpc.v1.cri). Every object lives in containerd's
 * `k8s.io` namespace, whatever namespace a call carries.
 */
export class CriService {
  readonly sandboxes = new RecordIndex<SandboxRecord>('sandbox');
  readonly containers = new RecordIndex<ContainerRecord>('container');
  readonly sandboxNames = new NameIndex();
  readonly containerNames = new NameIndex();
  readonly images: ImageManager;
  readonly sandboxManager: SandboxManager;
  readonly containerManager: ContainerManager;
  /** Exec, Attach and PortForward's HTTP server (stream_server_address:stream_server_port). */
  readonly streaming: StreamServer;
  private readonly streamingRuntime: CriStreamingRuntime;
  readonly stats: StatsManager;
  /** GetContainerEvents' subscribers; the managers emit each transition here. */
  readonly events: ContainerEvents;
  private podCidr = '';

  constructor(
    readonly deps: CriDeps,
    readonly config: CriConfig,
    private readonly opts: CriServiceOptions,
  ) {
    this.images = new ImageManager(this);
    this.sandboxManager = new SandboxManager(this);
    this.containerManager = new ContainerManager(this);
    this.streamingRuntime = new CriStreamingRuntime(this);
    this.streaming = new StreamServer(this.streamingRuntime, {
      address: config.streamServerAddress,
      port: config.streamServerPort,
      log: (msg, fields) => deps.log.with({ ...(fields as Record<string, string>) }).warn(msg),
    });
    this.stats = new StatsManager(this);
    this.events = new ContainerEvents(
      (containerId, sandboxId, type, createdAt) =>
        this.containerEvent(containerId, sandboxId, type, createdAt),
      deps.log,
    );
  }

  /** The Context every CRI call works in: the caller's cancellation, containerd's k8s.io namespace. */
  ctx(ctx: Context = {}): Context {
    return withNamespace(ctx, CRI_NAMESPACE);
  }

  /** Reloads pods and containers of an earlier run; call before serving. */
  async start(): Promise<void> {
    await this.sandboxManager.recover(this.ctx());
    await this.containerManager.recover(this.ctx());
    await this.streaming.start();
  }

  async close(): Promise<void> {
    this.events.close();
    await this.streaming.close();
    await this.containerManager.close();
    await this.sandboxManager.close();
  }

  version(_req: wire.cri.VersionRequest): wire.cri.VersionResponse {
    return {
      version: KUBE_API_VERSION,
      runtimeName: 'berth',
      runtimeVersion: this.opts.version,
      runtimeApiVersion: CRI_API_VERSION,
    };
  }

  async status(req: wire.cri.StatusRequest): Promise<wire.cri.StatusResponse> {
    const net = await this.sandboxManager.networkStatus();
    const info: Record<string, string> = {};
    if (req.verbose) {
      info.config = JSON.stringify({
        ...this.config,
        runtimes: Object.fromEntries(this.config.runtimes),
        podCidr: this.podCidr,
      });
      info.lastCNILoadStatus = net.lastLoadStatus;
    }
    return {
      status: {
        conditions: [
          { type: 'RuntimeReady', status: true, reason: '', message: '' },
          {
            type: 'NetworkReady',
            status: net.ready,
            reason: net.ready ? '' : net.reason,
            message: net.ready ? '' : net.message,
          },
        ],
      },
      info,
    };
  }

  async updateRuntimeConfig(
    ctx: Context,
    req: wire.cri.UpdateRuntimeConfigRequest,
  ): Promise<wire.cri.UpdateRuntimeConfigResponse> {
    this.podCidr = req.runtimeConfig?.networkConfig?.podCidr ?? '';
    await this.sandboxManager.updateRuntimeConfig(this.ctx(ctx), req);
    return {};
  }

  /**
   * An event as containerd 1.7's generateAndSendContainerEvent builds it: the pod's status
   * (none once the pod is gone) and the statuses of the pod's containers, read now.
   */
  private async containerEvent(
    containerId: string,
    sandboxId: string,
    type: ContainerEventType,
    createdAt: number,
  ): Promise<wire.cri.ContainerEventResponse> {
    const ctx = this.ctx();
    let podSandboxStatus: wire.cri.PodSandboxStatus | undefined;
    if (this.sandboxes.find(sandboxId)?.id === sandboxId)
      podSandboxStatus = (await this.sandboxManager.status(ctx, { podSandboxId: sandboxId, verbose: false }))
        .status;
    const containersStatuses: wire.cri.ContainerStatus[] = [];
    for (const c of this.containers.list()) {
      if (c.sandboxId !== sandboxId) continue;
      try {
        const s = (await this.containerManager.status(ctx, { containerId: c.id, verbose: false })).status;
        if (s) containersStatuses.push(s);
      } catch (e) {
        if (!isNotFound(e)) throw e; // removed meanwhile
      }
    }
    return { containerId, containerEventType: type, createdAt, podSandboxStatus, containersStatuses };
  }

  /** GetContainerEvents: this subscriber's events until it goes away or the daemon closes. */
  private async streamEvents(ctx: Context, call: ServerStreamCall<wire.cri.GetEventsRequest>): Promise<void> {
    const signal = ctx.signal;
    for await (const ev of this.events.subscribe(signal)) {
      if (call.write(ev)) continue;
      // The client reads slowly: its queue in `events` fills meanwhile, and drops past its bound.
      await new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        call.once('drain', done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Registers RuntimeService and ImageService on a @berth/grpc server. */
  register(server: ServiceRegistrar, log?: Log): void {
    const h = <Req, Res>(method: string, fn: (ctx: Context, req: Req) => Promise<Res> | Res): Handler =>
      unary<Req, Res>((ctx, req) => fn(this.ctx(ctx), req), { method, log } satisfies HandlerOptions);
    const later = (method: string) =>
      h(`RuntimeService/${method}`, () => {
        throw new NotImplementedError(`${method}: not implemented`);
      });
    const s = this.sandboxManager;
    const c = this.containerManager;
    const i = this.images;
    server.addService(grpcService(RUNTIME_SERVICE), {
      Version: h('RuntimeService/Version', (_ctx, req: wire.cri.VersionRequest) => this.version(req)),
      Status: h('RuntimeService/Status', (_ctx, req: wire.cri.StatusRequest) => this.status(req)),
      UpdateRuntimeConfig: h(
        'RuntimeService/UpdateRuntimeConfig',
        (ctx, req: wire.cri.UpdateRuntimeConfigRequest) => this.updateRuntimeConfig(ctx, req),
      ),
      RunPodSandbox: h('RuntimeService/RunPodSandbox', (ctx, req: wire.cri.RunPodSandboxRequest) =>
        s.run(ctx, req),
      ),
      StopPodSandbox: h('RuntimeService/StopPodSandbox', (ctx, req: wire.cri.StopPodSandboxRequest) =>
        s.stop(ctx, req),
      ),
      RemovePodSandbox: h('RuntimeService/RemovePodSandbox', (ctx, req: wire.cri.RemovePodSandboxRequest) =>
        s.remove(ctx, req),
      ),
      PodSandboxStatus: h('RuntimeService/PodSandboxStatus', (ctx, req: wire.cri.PodSandboxStatusRequest) =>
        s.status(ctx, req),
      ),
      ListPodSandbox: h('RuntimeService/ListPodSandbox', (ctx, req: wire.cri.ListPodSandboxRequest) =>
        s.list(ctx, req),
      ),
      CreateContainer: h('RuntimeService/CreateContainer', (ctx, req: wire.cri.CreateContainerRequest) =>
        c.create(ctx, req),
      ),
      StartContainer: h('RuntimeService/StartContainer', (ctx, req: wire.cri.StartContainerRequest) =>
        c.start(ctx, req),
      ),
      StopContainer: h('RuntimeService/StopContainer', (ctx, req: wire.cri.StopContainerRequest) =>
        c.stop(ctx, req),
      ),
      RemoveContainer: h('RuntimeService/RemoveContainer', (ctx, req: wire.cri.RemoveContainerRequest) =>
        c.remove(ctx, req),
      ),
      ContainerStatus: h('RuntimeService/ContainerStatus', (ctx, req: wire.cri.ContainerStatusRequest) =>
        c.status(ctx, req),
      ),
      ListContainers: h('RuntimeService/ListContainers', (ctx, req: wire.cri.ListContainersRequest) =>
        c.list(ctx, req),
      ),
      UpdateContainerResources: h(
        'RuntimeService/UpdateContainerResources',
        (ctx, req: wire.cri.UpdateContainerResourcesRequest) => c.updateResources(ctx, req),
      ),
      ExecSync: h('RuntimeService/ExecSync', (ctx, req: wire.cri.ExecSyncRequest) => c.execSync(ctx, req)),
      ReopenContainerLog: h(
        'RuntimeService/ReopenContainerLog',
        (ctx, req: wire.cri.ReopenContainerLogRequest) => c.reopenLog(ctx, req),
      ),
      Exec: h('RuntimeService/Exec', (_ctx, req: wire.cri.ExecRequest) => {
        this.streamingRuntime.checkContainer(req.containerId);
        return this.streaming.exec(req);
      }),
      Attach: h('RuntimeService/Attach', (_ctx, req: wire.cri.AttachRequest) => {
        this.streamingRuntime.checkContainer(req.containerId);
        return this.streaming.attach(req);
      }),
      PortForward: h('RuntimeService/PortForward', (_ctx, req: wire.cri.PortForwardRequest) => {
        this.streamingRuntime.checkSandbox(req.podSandboxId);
        return this.streaming.portForward(req);
      }),
      ContainerStats: h('RuntimeService/ContainerStats', (ctx, req: wire.cri.ContainerStatsRequest) =>
        this.stats.containerStats(ctx, req),
      ),
      ListContainerStats: h(
        'RuntimeService/ListContainerStats',
        (ctx, req: wire.cri.ListContainerStatsRequest) => this.stats.listContainerStats(ctx, req),
      ),
      PodSandboxStats: h('RuntimeService/PodSandboxStats', (ctx, req: wire.cri.PodSandboxStatsRequest) =>
        this.stats.podSandboxStats(ctx, req),
      ),
      ListPodSandboxStats: h(
        'RuntimeService/ListPodSandboxStats',
        (ctx, req: wire.cri.ListPodSandboxStatsRequest) => this.stats.listPodSandboxStats(ctx, req),
      ),
      GetContainerEvents: serverStream<wire.cri.GetEventsRequest, wire.cri.ContainerEventResponse>(
        (ctx, _req, call) => this.streamEvents(this.ctx(ctx), call),
        { method: 'RuntimeService/GetContainerEvents', log },
      ),
      CheckpointContainer: later('CheckpointContainer'),
      ListMetricDescriptors: later('ListMetricDescriptors'),
      ListPodSandboxMetrics: later('ListPodSandboxMetrics'),
    });
    server.addService(grpcService(IMAGE_SERVICE), {
      ListImages: h('ImageService/ListImages', (ctx, req: wire.cri.ListImagesRequest) =>
        i.listImages(ctx, req),
      ),
      ImageStatus: h('ImageService/ImageStatus', (ctx, req: wire.cri.ImageStatusRequest) =>
        i.imageStatus(ctx, req),
      ),
      PullImage: h('ImageService/PullImage', (ctx, req: wire.cri.PullImageRequest) => i.pullImage(ctx, req)),
      RemoveImage: h('ImageService/RemoveImage', (ctx, req: wire.cri.RemoveImageRequest) =>
        i.removeImage(ctx, req),
      ),
      ImageFsInfo: h('ImageService/ImageFsInfo', (ctx, req: wire.cri.ImageFsInfoRequest) =>
        i.imageFsInfo(ctx, req),
      ),
    });
  }
}
