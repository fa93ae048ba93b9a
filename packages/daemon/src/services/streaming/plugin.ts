import { PluginType } from '@berth/api';
import type { DaemonRegistration } from '../../registry';
import { StreamManager } from './manager';
import { StreamingServer } from './server';

/** containerd 2's plugin type for the stream manager. */
export const STREAMING_PLUGIN_TYPE = 'io.containerd.streaming.v1';

/** io.containerd.streaming.v1 "manager": streams by id for the services that use them. */
export const streamManagerPlugin: DaemonRegistration<undefined, StreamManager> = {
  type: STREAMING_PLUGIN_TYPE,
  id: 'manager',
  init: () => new StreamManager(),
};

/** io.containerd.grpc.v1 "streaming": containerd.services.streaming.v1.Streaming. */
export const streamingGrpcPlugin: DaemonRegistration<undefined, StreamingServer> = {
  type: PluginType.GRPC,
  id: 'streaming',
  requires: [STREAMING_PLUGIN_TYPE],
  init: async (ic) =>
    new StreamingServer(await ic.getById<StreamManager>(STREAMING_PLUGIN_TYPE, 'manager'), ic.log),
};
