/**
 * The snapshotter conformance suite through the metadata layer, over the real overlayfs
 * and native snapshotters: namespaced keys and SQLite-held parents and labels must be
 * invisible to a user of the Snapshotter interface. Needs root (mounts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshotter } from '@berth/api';
import { checkOverlaySupport, openNativeSnapshotter, openOverlaySnapshotter } from '@berth/snapshotter';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { openMetadataDB } from '../src';

async function base(): Promise<string> {
  for (const dir of [tmpdir(), '/var/tmp']) {
    try {
      await checkOverlaySupport(dir);
      return dir;
    } catch {}
  }
  throw new Error('overlayfs works neither in the temp dir nor in /var/tmp');
}

function factory(name: string, open: (root: string) => Promise<Snapshotter>) {
  return async () => {
    const dir = await mkdtemp(join(await base(), `metadata-${name}-`));
    const backing = await open(join(dir, 'snapshots'));
    const db = openMetadataDB(join(dir, 'meta.db'), { snapshotters: { [name]: backing } });
    const snapshotter = db.snapshotter(name)!;
    let closed = false;
    const close = snapshotter.close.bind(snapshotter);
    snapshotter.close = () => {
      closed = true;
      return close();
    };
    return {
      snapshotter,
      ctx: { namespace: 'suite' },
      cleanup: async () => {
        if (!closed) {
          // What the test removed is freed by a collection: afterwards the backing
          // snapshotter holds exactly what the records name.
          await db.collectGarbage();
          const recorded: string[] = [];
          await snapshotter.walk({ namespace: 'suite' }, (i) => void recorded.push(i.name));
          let held = 0;
          await backing.walk({}, () => void held++);
          expect(held).toBe(recorded.length);
        }
        await backing.close();
        await db.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}

runSnapshotterSuite(
  'metadata(overlayfs)',
  factory('overlayfs', (root) => openOverlaySnapshotter(root)),
);
runSnapshotterSuite(
  'metadata(native)',
  factory('native', (root) => openNativeSnapshotter(root)),
);
