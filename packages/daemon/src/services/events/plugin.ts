import { PluginType } from '@berth/api';
import type { Exchange } from '../../events/exchange';
import type { DaemonRegistration } from '../../registry';
import { EventsServer } from './server';

/** io.containerd.grpc.v1 "events": containerd.services.events.v1.Events over the exchange. */
export const eventsGrpcPlugin: DaemonRegistration<undefined, EventsServer> = {
  type: PluginType.GRPC,
  id: 'events',
  requires: [PluginType.Event],
  init: async (ic) => new EventsServer(await ic.get<Exchange>(PluginType.Event), ic.log),
};
