import { PluginType, type Publisher } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import { ContainersLocal } from './local';
import { ContainersServer } from './server';

/** io.containerd.service.v1 "containers-service": the metadata container store with events. */
export const containersServicePlugin: DaemonRegistration<undefined, ContainersLocal> = {
  type: PluginType.Service,
  id: 'containers-service',
  requires: [PluginType.Event, PluginType.Metadata],
  init: async (ic) => {
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const events = await ic.get<Publisher>(PluginType.Event);
    return new ContainersLocal(db.containers, events);
  },
};

/** io.containerd.grpc.v1 "containers": containerd.services.containers.v1.Containers. */
export const containersGrpcPlugin: DaemonRegistration<undefined, ContainersServer> = {
  type: PluginType.GRPC,
  id: 'containers',
  requires: [PluginType.Service],
  init: async (ic) =>
    new ContainersServer(await ic.getById<ContainersLocal>(PluginType.Service, 'containers-service'), ic.log),
};
