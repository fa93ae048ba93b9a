import { PluginType } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import { type GCScheduler, LeasesLocal } from './local';
import { LeasesServer } from './server';

export const leasesServicePlugin: DaemonRegistration<undefined, LeasesLocal> = {
  type: PluginType.Service,
  id: 'leases-service',
  requires: [PluginType.Metadata, PluginType.GC],
  init: async (ic) => {
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const gc = await ic.get<GCScheduler>(PluginType.GC);
    return new LeasesLocal(db.leases, gc);
  },
};

export const leasesGrpcPlugin: DaemonRegistration<undefined, LeasesServer> = {
  type: PluginType.GRPC,
  id: 'leases',
  requires: [PluginType.Service],
  init: async (ic) =>
    new LeasesServer(await ic.getById<LeasesLocal>(PluginType.Service, 'leases-service'), ic.log),
};
