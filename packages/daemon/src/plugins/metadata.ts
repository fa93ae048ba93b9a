import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type ContentStore, InvalidArgumentError, PluginType } from '@berth/api';
import { type MetadataDB, openMetadataDB } from '@berth/metadata';
import type { DaemonRegistration } from '../registry';

export interface MetadataConfig {
  /** `shared` (default) or `isolated`, as containerd's bolt plugin. */
  content_sharing_policy: string;
}

/**
 * io.containerd.metadata.v1 "sqlite" (containerd's "bolt"): namespaces, leases and the
 * per-namespace view of content in `<root>/io.containerd.metadata.v1.sqlite/meta.db`.
 */
export const metadataPlugin: DaemonRegistration<MetadataConfig, MetadataDB> = {
  type: PluginType.Metadata,
  id: 'sqlite',
  requires: [PluginType.Content],
  config: { content_sharing_policy: 'shared' },
  init: async (ic) => {
    const policy = ic.config.content_sharing_policy;
    if (policy !== 'shared' && policy !== 'isolated') {
      throw new InvalidArgumentError(
        `unknown content sharing policy "${policy}": expected "shared" or "isolated"`,
      );
    }
    mkdirSync(ic.root, { recursive: true, mode: 0o711 });
    const content = await ic.get<ContentStore>(PluginType.Content);
    const path = join(ic.root, 'meta.db');
    ic.exports.path = path;
    ic.exports.policy = policy;
    // Collections are the gc.v1 scheduler's to start (gc/scheduler.ts).
    return openMetadataDB(path, {
      content,
      contentSharing: policy,
      onReserve: (event, file) =>
        event === 'released'
          ? ic.log
              .with({ path: file })
              .warn('disk full: released the metadata space reserve so deletes can commit')
          : ic.log.with({ path: file }).info('metadata space reserve restored'),
    });
  },
};
