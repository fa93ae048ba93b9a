import { type ContentStore, NotFoundError, PluginType, type Publisher } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import { ContentServer } from './server';
import { ContentServiceStore } from './store';

export const contentServicePlugin: DaemonRegistration<undefined, ContentStore> = {
  type: PluginType.Service,
  id: 'content-service',
  requires: [PluginType.Event, PluginType.Metadata],
  init: async (ic) => {
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const events = await ic.get<Publisher>(PluginType.Event);
    if (!db.content) throw new NotFoundError('metadata database has no content store');
    return new ContentServiceStore(db.content, events);
  },
};

export const contentGrpcPlugin: DaemonRegistration<undefined, ContentServer> = {
  type: PluginType.GRPC,
  id: 'content',
  requires: [PluginType.Service],
  init: async (ic) =>
    new ContentServer(await ic.getById<ContentStore>(PluginType.Service, 'content-service'), ic.log),
};
