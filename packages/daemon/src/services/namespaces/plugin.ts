import { type NamespaceStore, PluginType, type Publisher } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import { NamespacesLocal } from './local';
import { NamespacesServer } from './server';

export const namespacesServicePlugin: DaemonRegistration<undefined, NamespacesLocal> = {
  type: PluginType.Service,
  id: 'namespaces-service',
  requires: [PluginType.Event, PluginType.Metadata],
  init: async (ic) => {
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const events = await ic.get<Publisher>(PluginType.Event);
    return new NamespacesLocal(db.namespaces as NamespaceStore, events);
  },
};

export const namespacesGrpcPlugin: DaemonRegistration<undefined, NamespacesServer> = {
  type: PluginType.GRPC,
  id: 'namespaces',
  requires: [PluginType.Service],
  init: async (ic) =>
    new NamespacesServer(await ic.getById<NamespacesLocal>(PluginType.Service, 'namespaces-service'), ic.log),
};
