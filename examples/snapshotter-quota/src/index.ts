import type { SnapshotterPlugin } from '@berth/api';
import { type QuotaOptions, QuotaSnapshotter } from './quota-snapshotter';

export { QUOTA_LABEL, type QuotaOptions, QuotaSnapshotter } from './quota-snapshotter';

/** The options read from `[plugins."io.containerd.snapshotter.v1.<id>"]` besides `module`. */
export interface QuotaPluginConfig {
  /** Where metadata.json and the committed layers go; the plugin's directory under berthd's root when ''. */
  root_path: string;
  /** Bytes each writable layer may hold (64 MiB by default). */
  size: number;
  /** Inodes each writable layer may hold; 0 for tmpfs' default. */
  inodes: number;
}

/** What berthd loads: `module = "berth-snapshotter-quota"`. */
export const plugin: SnapshotterPlugin<QuotaPluginConfig> = {
  // Written out, not PluginType.Snapshot: this is the version the package was built for.
  implements: 'io.containerd.snapshotter.v1',
  config: { root_path: '', size: 64 << 20, inodes: 0 },
  init: (ic) => {
    const opts: QuotaOptions = { size: ic.config.size, inodes: ic.config.inodes };
    const root = ic.config.root_path || ic.root;
    ic.exports.root = root;
    ic.exports.size = String(opts.size);
    return QuotaSnapshotter.open(root, opts);
  },
};
