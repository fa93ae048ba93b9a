/** The project's snapshotter conformance suite against the quota snapshotter, in-process. Needs root. */
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { QuotaSnapshotter } from '../src';
import { tempRoot } from './helpers';

runSnapshotterSuite('quota', async () => {
  const { root, remove } = await tempRoot('quota-suite');
  const snapshotter = await QuotaSnapshotter.open(root, { size: 16 << 20 });
  return {
    snapshotter,
    ctx: {},
    cleanup: async () => {
      await snapshotter.close();
      await remove();
    },
  };
});
