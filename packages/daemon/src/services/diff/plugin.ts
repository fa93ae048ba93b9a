import { InvalidArgumentError, NotFoundError, PluginType } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import { hostPlatform } from '../../plugins/platform';
import type { DaemonRegistration } from '../../registry';
import { DiffLocal } from './local';
import { DiffServer } from './server';
import { type Differ, WalkingDiffer } from './walking';

/** io.containerd.differ.v1 "walking": applies and computes layers over the metadata content store. */
export const walkingDifferPlugin: DaemonRegistration<undefined, WalkingDiffer> = {
  type: PluginType.Differ,
  id: 'walking',
  requires: [PluginType.Metadata],
  init: async (ic) => {
    ic.platforms.push(hostPlatform());
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    if (!db.content) throw new NotFoundError('metadata database has no content store');
    return new WalkingDiffer(db.content);
  },
};

export interface DiffServiceConfig {
  /** The differs to try, in order (containerd's `default`). */
  default: string[];
}

/** io.containerd.service.v1 "diff-service". */
export const diffServicePlugin: DaemonRegistration<DiffServiceConfig, DiffLocal> = {
  type: PluginType.Service,
  id: 'diff-service',
  requires: [PluginType.Differ],
  config: { default: ['walking'] },
  init: async (ic) => {
    const all = await ic.getAll<Differ>(PluginType.Differ);
    const ordered = ic.config.default.map((name) => {
      const d = all.get(name);
      if (!d) throw new InvalidArgumentError(`needed differ not loaded: ${name}`);
      return d;
    });
    return new DiffLocal(ordered);
  },
};

/** io.containerd.grpc.v1 "diff". */
export const diffGrpcPlugin: DaemonRegistration<undefined, DiffServer> = {
  type: PluginType.GRPC,
  id: 'diff',
  requires: [PluginType.Service],
  init: async (ic) => new DiffServer(await ic.getById<DiffLocal>(PluginType.Service, 'diff-service'), ic.log),
};
