import { PluginType } from '@berth/api';
import { type LocalStore, openLocalStore } from '@berth/content';
import type { DaemonRegistration } from '../registry';

/**
 * io.containerd.content.v1 "content": the local content-addressable store under
 * `<root>/io.containerd.content.v1.content`. Labels live in the metadata database, so the
 * store keeps none of its own (as containerd's local.NewStore).
 */
export const contentPlugin: DaemonRegistration<undefined, LocalStore> = {
  type: PluginType.Content,
  id: 'content',
  init: async (ic) => {
    ic.exports.root = ic.root;
    return openLocalStore({ root: ic.root, labels: false });
  },
};
