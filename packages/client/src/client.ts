import { type Context, fromTimestamp, grpcClientConstructor, UnavailableError, type wire } from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import { grpcTarget, socketPath } from './address';
import { RemoteContainerStore } from './containers';
import { RemoteContentStore } from './content-store';
import { RemoteDiff } from './diff';
import { RemoteEventService } from './events';
import { RemoteImageStore } from './images';
import { RemoteLeaseManager } from './leases';
import { RemoteNamespaceStore } from './namespaces';
import { abortedError, unary } from './rpc';
import { RemoteSnapshotter } from './snapshots';
import { RemoteTasks } from './tasks';

export interface ConnectOptions {
  /** Largest message accepted from the server (default 16 MiB, as containerd's client). */
  maxReceiveMessageBytes?: number;
  /** Largest message sent (default 16 MiB, what containerd's server accepts). */
  maxSendMessageBytes?: number;
}

export interface VersionInfo {
  version: string;
  revision: string;
}

export interface ServerInfo {
  uuid: string;
  pid: number;
  pidns: number;
  deprecations: { id: string; message: string; lastOccurrence: Date }[];
}

export interface PluginPlatform {
  os: string;
  architecture: string;
  variant: string;
}

export interface PluginInfo {
  type: string;
  id: string;
  requires: string[];
  platforms: PluginPlatform[];
  exports: Record<string, string>;
  capabilities: string[];
  /** Set when the plugin failed to initialise (or was skipped). */
  initErr?: { code: number; message: string };
}

const SERVICE = {
  content: 'containerd.services.content.v1.Content',
  leases: 'containerd.services.leases.v1.Leases',
  namespaces: 'containerd.services.namespaces.v1.Namespaces',
  version: 'containerd.services.version.v1.Version',
  introspection: 'containerd.services.introspection.v1.Introspection',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  images: 'containerd.services.images.v1.Images',
  containers: 'containerd.services.containers.v1.Containers',
  events: 'containerd.services.events.v1.Events',
  tasks: 'containerd.services.tasks.v1.Tasks',
  diff: 'containerd.services.diff.v1.Diff',
} as const;

const MiB = 1 << 20;

/**
 * A connection to a containerd-compatible daemon (berthd or containerd) over its unix
 * socket. One HTTP/2 channel carries every service; the connection is made lazily by
 * the first call, which fails with UnavailableError when nothing listens.
 */
export class Client {
  /** The socket path connected to. */
  readonly address: string;
  private readonly channel: grpc.Channel;
  private readonly stubs = new Map<string, grpc.Client>();
  private closed = false;
  private contentStore?: RemoteContentStore;
  private leaseManager?: RemoteLeaseManager;
  private namespaceStore?: RemoteNamespaceStore;
  private imageStore?: RemoteImageStore;
  private containerStore?: RemoteContainerStore;
  private eventService?: RemoteEventService;
  private taskService?: RemoteTasks;
  private diffService?: RemoteDiff;
  private readonly snapshotters = new Map<string, RemoteSnapshotter>();

  constructor(address: string, opts: ConnectOptions = {}) {
    const target = grpcTarget(address);
    this.address = socketPath(address);
    this.channel = new grpc.Channel(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': opts.maxReceiveMessageBytes ?? 16 * MiB,
      'grpc.max_send_message_length': opts.maxSendMessageBytes ?? 16 * MiB,
    });
  }

  get content(): RemoteContentStore {
    this.contentStore ??= new RemoteContentStore(this.stub(SERVICE.content), this.address);
    return this.contentStore;
  }

  get leases(): RemoteLeaseManager {
    this.leaseManager ??= new RemoteLeaseManager(this.stub(SERVICE.leases), this.address);
    return this.leaseManager;
  }

  get namespaces(): RemoteNamespaceStore {
    this.namespaceStore ??= new RemoteNamespaceStore(this.stub(SERVICE.namespaces), this.address);
    return this.namespaceStore;
  }

  get images(): RemoteImageStore {
    this.imageStore ??= new RemoteImageStore(this.stub(SERVICE.images), this.address);
    return this.imageStore;
  }

  get containers(): RemoteContainerStore {
    this.containerStore ??= new RemoteContainerStore(this.stub(SERVICE.containers), this.address);
    return this.containerStore;
  }

  get events(): RemoteEventService {
    this.eventService ??= new RemoteEventService(this.stub(SERVICE.events), this.address);
    return this.eventService;
  }

  get tasks(): RemoteTasks {
    this.taskService ??= new RemoteTasks(this.stub(SERVICE.tasks), this.address);
    return this.taskService;
  }

  /** The daemon's default differ (containerd.services.diff.v1.Diff). */
  get diff(): RemoteDiff {
    this.diffService ??= new RemoteDiff(this.stub(SERVICE.diff), this.address);
    return this.diffService;
  }

  /**
   * The snapshotter `name` on the daemon (`overlayfs`, `native`, a proxy plugin's name), or
   * the one a standalone snapshotter server serves (it ignores the name).
   */
  snapshots(name: string): RemoteSnapshotter {
    let sn = this.snapshotters.get(name);
    if (!sn) {
      sn = new RemoteSnapshotter(this.stub(SERVICE.snapshots), name, this.address);
      this.snapshotters.set(name, sn);
    }
    return sn;
  }

  async version(ctx: Context = {}): Promise<VersionInfo> {
    const res = await unary<VersionInfo>(this.stub(SERVICE.version), 'Version', {}, ctx, this.address);
    return { version: res.version, revision: res.revision };
  }

  /** Introspection.Server: the daemon's identity (uuid; pid and pidns where the server reports them). */
  async server(ctx: Context = {}): Promise<ServerInfo> {
    const res = await unary<wire.introspection.ServerResponse>(
      this.stub(SERVICE.introspection),
      'Server',
      {},
      ctx,
      this.address,
    );
    return {
      uuid: res.uuid,
      pid: res.pid ?? 0,
      pidns: res.pidns ?? 0,
      deprecations: (res.deprecations ?? []).map((d) => ({
        id: d.id,
        message: d.message,
        lastOccurrence: fromTimestamp(d.lastOccurrence),
      })),
    };
  }

  /** Introspection.Plugins: the daemon's plugins matching filters (containerd's filter syntax). */
  async plugins(filters: string[] = [], ctx: Context = {}): Promise<PluginInfo[]> {
    const res = await unary<wire.introspection.PluginsResponse>(
      this.stub(SERVICE.introspection),
      'Plugins',
      { filters },
      ctx,
      this.address,
    );
    return res.plugins.map((p) => {
      const info: PluginInfo = {
        type: p.type,
        id: p.id,
        requires: [...(p.requires ?? [])],
        platforms: (p.platforms ?? []).map((x) => ({
          os: x.os,
          architecture: x.architecture,
          variant: x.variant,
        })),
        exports: { ...(p.exports ?? {}) },
        capabilities: [...(p.capabilities ?? [])],
      };
      if (p.initErr) info.initErr = { code: p.initErr.code, message: p.initErr.message };
      return info;
    });
  }

  /** Resolves once the channel is connected; UnavailableError when it cannot be by then. */
  waitForReady(timeoutMs = 10_000, ctx: Context = {}): Promise<void> {
    const stub = this.stub(SERVICE.version);
    return new Promise((resolve, reject) => {
      if (ctx.signal?.aborted) {
        reject(abortedError(ctx.signal));
        return;
      }
      stub.waitForReady(Date.now() + timeoutMs, (err) => {
        if (!err) resolve();
        else reject(new UnavailableError(`connect ${this.address}: ${err.message}`));
      });
    });
  }

  /** Closes the channel; calls still in flight fail. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
  }

  /** A grpc-js stub of a containerd service on this connection (for services without a proxy here). */
  stubFor(service: string): grpc.Client {
    return this.stub(service);
  }

  private stub(service: string): grpc.Client {
    let stub = this.stubs.get(service);
    if (stub === undefined) {
      const Ctor = grpcClientConstructor(service);
      stub = new Ctor('unused', grpc.credentials.createInsecure(), { channelOverride: this.channel });
      this.stubs.set(service, stub);
    }
    return stub;
  }
}

/**
 * A snapshotter reached on its own connection (a proxy snapshotter's socket): close()
 * closes the connection.
 */
export function connectSnapshotter(address: string, name: string, opts?: ConnectOptions): RemoteSnapshotter {
  const client = new Client(address, opts);
  return new RemoteSnapshotter(client.stubFor(SERVICE.snapshots), name, client.address, () => client.close());
}

/** Connects to a daemon at address (a unix socket path; the `unix://` prefix is optional). */
export function connect(address: string, opts?: ConnectOptions): Client {
  return new Client(address, opts);
}
