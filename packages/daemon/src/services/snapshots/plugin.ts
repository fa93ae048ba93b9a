import { PluginType, type Publisher, type Snapshotter } from '@berth/api';
import type { MetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../../registry';
import { EventedSnapshotter, SnapshotsLocal } from './local';
import { SnapshotsServer } from './server';

export interface SnapshotsServiceConfig {
  /** The snapshotter a request without a `snapshotter` name uses. */
  default_snapshotter: string;
}

/** Runs a garbage collection now (the gc.v1 scheduler). */
interface GCScheduler {
  scheduleAndWait(): Promise<unknown>;
}

/**
 * io.containerd.service.v1 "snapshots-service": every loaded snapshotter plugin (built-in
 * or proxy) wrapped by the metadata database (namespaces, labels, leases, GC) and then
 * with events, as containerd's.
 */
export const snapshotsServicePlugin: DaemonRegistration<SnapshotsServiceConfig, SnapshotsLocal> = {
  type: PluginType.Service,
  id: 'snapshots-service',
  requires: [PluginType.Event, PluginType.Metadata, PluginType.Snapshot, PluginType.GC],
  config: { default_snapshotter: 'overlayfs' },
  init: async (ic) => {
    const db = await ic.get<MetadataDB>(PluginType.Metadata);
    const events = await ic.get<Publisher>(PluginType.Event);
    const gc = await ic.get<GCScheduler>(PluginType.GC).catch(() => undefined);
    const backing = await ic.getAll<Snapshotter>(PluginType.Snapshot);
    const out = new Map<string, EventedSnapshotter>();
    for (const [name, sn] of backing) {
      const sn2 = new EventedSnapshotter(db.snapshotter(name) ?? db.addSnapshotter(name, sn), events);
      sn2.collect = () => (gc ? gc.scheduleAndWait() : db.collectGarbage());
      out.set(name, sn2);
    }
    return new SnapshotsLocal(out, ic.config.default_snapshotter);
  },
};

/** io.containerd.grpc.v1 "snapshots". */
export const snapshotsGrpcPlugin: DaemonRegistration<undefined, SnapshotsServer> = {
  type: PluginType.GRPC,
  id: 'snapshots',
  requires: [PluginType.Service],
  init: async (ic) =>
    new SnapshotsServer(await ic.getById<SnapshotsLocal>(PluginType.Service, 'snapshots-service'), ic.log),
};
