import { openNativeSnapshotter } from '@berth/snapshotter';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { tempRoot } from './helpers';

runSnapshotterSuite('native', async () => {
  const { root, remove } = await tempRoot('native-suite');
  const snapshotter = await openNativeSnapshotter(root);
  return {
    snapshotter,
    ctx: {},
    cleanup: async () => {
      await snapshotter.close();
      await remove();
    },
  };
});
