import { dirname, join } from 'node:path';
import {
  type ContainerStore,
  type ContentStore,
  type ImageStore,
  type LeaseManager,
  PluginType,
  type TaskService,
} from '@berth/api';
import { type CriPluginConfig, CriService, defaultCriPluginConfig, resolveCriConfig } from '@berth/cri';
import { configureHosts, parseReference, RegistryClient } from '@berth/images';
import type { Exchange } from '../events/exchange';
import type { DaemonRegistration } from '../registry';
import type { TaskManager } from '../runtime/manager';
import type { ServiceRegistrar } from '../server/grpc-server';
import type { SnapshotsLocal } from '../services/snapshots/local';
import type { TransferLocal } from '../services/transfer/local';
import { VERSION } from '../version';

/** The CRI service as the gRPC server registers it. */
class CriGrpc {
  constructor(readonly cri: CriService) {}

  register(server: ServiceRegistrar): void {
    this.cri.register(server);
  }

  close(): Promise<void> {
    return this.cri.close();
  }
}

/**
 * io.containerd.grpc.v1 "cri": Kubernetes' runtime.v1 RuntimeService and ImageService on the
 * daemon's socket, as containerd serves them, over the in-process services.
 */
export const criPlugin: DaemonRegistration<CriPluginConfig, CriGrpc> = {
  type: PluginType.GRPC,
  id: 'cri',
  requires: [PluginType.Event, PluginType.Runtime, PluginType.Service, PluginType.Transfer],
  config: defaultCriPluginConfig(),
  init: async (ic) => {
    const config = resolveCriConfig(ic.config, (msg) => ic.log.warn(msg));
    const snapshots = await ic.getById<SnapshotsLocal>(PluginType.Service, 'snapshots-service');
    const transfer = await ic.getById<TransferLocal>(PluginType.Transfer, 'local');
    const runtime = await ic.getById<TaskManager>(PluginType.Runtime, 'task');
    const cri = new CriService(
      {
        content: await ic.getById<ContentStore>(PluginType.Service, 'content-service'),
        images: await ic.getById<ImageStore>(PluginType.Service, 'images-service'),
        containers: await ic.getById<ContainerStore>(PluginType.Service, 'containers-service'),
        leases: await ic.getById<LeaseManager>(PluginType.Service, 'leases-service'),
        snapshotter: (name) => snapshots.get(name),
        snapshotterRoot: (name) => {
          const uri = `${PluginType.Snapshot}.${name}`;
          const p = ic.plugins().find((r) => r.uri === uri);
          return p?.exports.root ?? join(dirname(ic.root), uri);
        },
        tasks: await ic.getById<TaskService>(PluginType.Service, 'tasks-service'),
        reopenShimLog: (ctx, id) => runtime.get(ctx, id).reopenLog(ctx),
        events: await ic.getById<Exchange>(PluginType.Event, 'exchange'),
        puller: {
          pull: async (ctx, reference, opts) => {
            const client = new RegistryClient({
              hosts: configureHosts({ hostsDir: opts.hostsDir || undefined }),
              credentials: opts.credentials,
            });
            const image = await transfer.pullImage(ctx, parseReference(reference), {
              client,
              snapshotter: opts.snapshotter,
              name: opts.name,
              labels: opts.labels,
            });
            if (!image) throw new Error(`pull of ${reference} saved no image`);
            return image;
          },
        },
        root: ic.root,
        state: ic.state,
        address: ic.address,
        log: ic.log,
      },
      config,
      { version: VERSION },
    );
    await cri.start();
    return new CriGrpc(cri);
  },
};
