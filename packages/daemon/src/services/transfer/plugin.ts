import { type ContentStore, type ImageStore, InvalidArgumentError, PluginType } from '@berth/api';
import { defaultApplyPool } from '@berth/images';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import type { DiffLocal } from '../diff/local';
import type { SnapshotsLocal } from '../snapshots/local';
import type { StreamManager } from '../streaming/manager';
import { STREAMING_PLUGIN_TYPE } from '../streaming/plugin';
import { type TransferConfig, TransferLocal } from './local';
import { TransferServer } from './server';

/**
 * io.containerd.transfer.v1 "local": pulls, pushes, imports and exports images over the
 * service layer (content, leases, images, snapshots, diff), as containerd 2's.
 */
export const transferPlugin: DaemonRegistration<TransferConfig, TransferLocal> = {
  type: PluginType.Transfer,
  id: 'local',
  requires: [PluginType.Service, PluginType.Metadata, STREAMING_PLUGIN_TYPE],
  config: { max_concurrent_downloads: 3, apply_workers: true },
  init: async (ic) => {
    const n = ic.config.max_concurrent_downloads;
    if (!Number.isInteger(n) || n < 1) {
      throw new InvalidArgumentError(
        `invalid config: plugins."io.containerd.transfer.v1.local".max_concurrent_downloads = ${n}: must be at least 1`,
      );
    }
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    return new TransferLocal({
      content: await ic.getById<ContentStore>(PluginType.Service, 'content-service'),
      leases: db.leases,
      images: await ic.getById<ImageStore>(PluginType.Service, 'images-service'),
      snapshots: await ic.getById<SnapshotsLocal>(PluginType.Service, 'snapshots-service'),
      differ: await ic.getById<DiffLocal>(PluginType.Service, 'diff-service'),
      streams: await ic.getById<StreamManager>(STREAMING_PLUGIN_TYPE, 'manager'),
      pool: ic.config.apply_workers ? defaultApplyPool() : undefined,
      config: ic.config,
      log: ic.log,
    });
  },
};

/** io.containerd.grpc.v1 "transfer": containerd.services.transfer.v1.Transfer. */
export const transferGrpcPlugin: DaemonRegistration<undefined, TransferServer> = {
  type: PluginType.GRPC,
  id: 'transfer',
  requires: [PluginType.Transfer],
  init: async (ic) =>
    new TransferServer(await ic.getById<TransferLocal>(PluginType.Transfer, 'local'), ic.log),
};
