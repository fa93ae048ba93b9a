import { PluginType, type Publisher } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import { type GCScheduler, ImagesLocal } from './local';
import { ImagesServer } from './server';

/** io.containerd.service.v1 "images-service": the metadata image store with events. */
export const imagesServicePlugin: DaemonRegistration<undefined, ImagesLocal> = {
  type: PluginType.Service,
  id: 'images-service',
  requires: [PluginType.Event, PluginType.Metadata, PluginType.GC],
  init: async (ic) => {
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const events = await ic.get<Publisher>(PluginType.Event);
    const gc = await ic.get<GCScheduler>(PluginType.GC);
    return new ImagesLocal(db.images, events, gc);
  },
};

/** io.containerd.grpc.v1 "images": containerd.services.images.v1.Images. */
export const imagesGrpcPlugin: DaemonRegistration<undefined, ImagesServer> = {
  type: PluginType.GRPC,
  id: 'images',
  requires: [PluginType.Service],
  init: async (ic) =>
    new ImagesServer(await ic.getById<ImagesLocal>(PluginType.Service, 'images-service'), ic.log),
};
