import { PluginType } from '@berth/api';
import type { DaemonRegistration } from '../registry';
import { type Collector, GCScheduler, parseDuration } from './scheduler';

export interface GCConfig {
  startup_delay: string;
}

export const gcSchedulerPlugin: DaemonRegistration<GCConfig, GCScheduler> = {
  type: PluginType.GC,
  id: 'scheduler',
  requires: [PluginType.Metadata],
  config: { startup_delay: '100ms' },
  init: async (ic) => {
    const startupDelayMs = parseDuration(ic.config.startup_delay);
    const db = await ic.get<Collector>(PluginType.Metadata);
    const s = new GCScheduler(db, { startupDelayMs, log: ic.log });
    ic.exports.StartupDelay = ic.config.startup_delay;
    s.start();
    return s;
  },
};
