import { openOverlaySnapshotter } from '@berth/snapshotter';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { tempRoot } from './helpers';

runSnapshotterSuite('overlayfs', async () => {
  const { root, remove } = await tempRoot('overlay-suite');
  const snapshotter = await openOverlaySnapshotter(root);
  return {
    snapshotter,
    ctx: {},
    cleanup: async () => {
      await snapshotter.close();
      await remove();
    },
  };
});
