import { PluginType } from '@berth/api';
import { openLocalStore } from '@berth/content';
import type { DaemonRegistration } from '../registry';
import { ReaderCacheStore } from './reader-cache';

/**
 * io.containerd.content.v1 "content": the local content-addressable store under
 * `<root>/io.containerd.content.v1.content`, with recently read blobs kept open. Labels
 * live in the metadata database, so the store keeps none of its own (as containerd's
 * local.NewStore).
 */
export const contentPlugin: DaemonRegistration<undefined, ReaderCacheStore> = {
  type: PluginType.Content,
  id: 'content',
  init: async (ic) => {
    ic.exports.root = ic.root;
    const store = await openLocalStore({ root: ic.root, labels: false });
    return new ReaderCacheStore(store, { blobPath: (digest) => store.blobPath(digest) });
  },
};
