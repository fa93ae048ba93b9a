import { realpathSync } from 'node:fs';
import { PluginType } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { Exchange } from '../events/exchange';
import { hostPlatform } from '../plugins/platform';
import type { DaemonRegistration } from '../registry';
import { ShimEventsServer, ttrpcAddressOf } from './events-server';
import { TaskManager } from './manager';

/** The berthd launcher running this process, for shims' `-publish-binary` ('' when not berthd). */
function publishBinary(): string {
  const launcher = process.argv[1];
  if (!launcher || !/(^|\/)berthd$/.test(launcher)) return '';
  try {
    return realpathSync(launcher);
  } catch {
    return '';
  }
}

/**
 * io.containerd.ttrpc.v1 "events": the ttrpc socket `<address>.ttrpc` that shims forward
 * their events to; serves containerd.services.events.ttrpc.v1.Events into the exchange.
 */
export const ttrpcEventsPlugin: DaemonRegistration<undefined, ShimEventsServer> = {
  type: PluginType.TTRPC,
  id: 'events',
  requires: [PluginType.Event],
  init: async (ic) => {
    const exchange = await ic.getById<Exchange>(PluginType.Event, 'exchange');
    const server = new ShimEventsServer(exchange, ic.log);
    const address = ttrpcAddressOf(ic.address);
    await server.listen(address);
    ic.exports.address = address;
    return server;
  },
};

/**
 * io.containerd.runtime.v2 "task": containerd's runtime v2 task manager. Bundles under
 * `<state>/io.containerd.runtime.v2.task/<ns>/<id>`, work dirs under the same path in
 * root; shims found by runtime name on PATH and next to berthd.
 */
export const taskRuntimePlugin: DaemonRegistration<undefined, TaskManager> = {
  type: PluginType.Runtime,
  id: 'task',
  // The ttrpc listener comes first, so shims found at start can forward their events.
  requires: [PluginType.Event, PluginType.Metadata, PluginType.TTRPC],
  init: async (ic) => {
    ic.platforms.push(hostPlatform());
    const exchange = await ic.getById<Exchange>(PluginType.Event, 'exchange');
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const shimEvents = await ic.getById<ShimEventsServer>(PluginType.TTRPC, 'events');
    const manager = await TaskManager.open({
      root: ic.root,
      state: ic.state,
      address: ic.address,
      ttrpcAddress: ttrpcAddressOf(ic.address),
      publishBinary: publishBinary(),
      containers: db.containers,
      events: exchange,
      log: ic.log,
      debugShims: ic.log.enabled('debug'),
    });
    shimEvents.observe((envelope) => manager.observe(envelope));
    return manager;
  },
};
