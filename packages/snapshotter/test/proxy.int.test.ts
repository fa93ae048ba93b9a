/**
 * The proxy snapshotter end to end: a snapshotter served over gRPC (in this process with
 * serveSnapshotter, and out of process with bin/berth-snapshotter) and reached through
 * @berth/client's RemoteSnapshotter passes the whole conformance suite, and errors keep
 * their codes and words across the wire. Needs root (mounts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError, type Snapshotter } from '@berth/api';
import { connectSnapshotter } from '@berth/client';
import { Server } from '@berth/grpc';
import {
  openNativeSnapshotter,
  openOverlaySnapshotter,
  serveSnapshotter,
  snapshotsServiceDefinition,
  snapshotsServiceHandlers,
} from '@berth/snapshotter';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { startSnapshotterServer } from '@berth/testkit';
import { tempRoot } from './helpers';

runSnapshotterSuite('proxy (in process, overlayfs)', async () => {
  const { root, remove } = await tempRoot('proxy-suite');
  const backing = await openOverlaySnapshotter(join(root, 'sn'));
  const server = await serveSnapshotter(backing, { address: join(root, 'sn.sock') });
  const snapshotter = connectSnapshotter(server.address, 'overlayfs');
  return {
    snapshotter,
    ctx: { namespace: 'suite' },
    cleanup: async () => {
      await snapshotter.close();
      await server.close();
      await backing.close();
      await remove();
    },
  };
});

runSnapshotterSuite('proxy (berth-snapshotter process, native)', async () => {
  const { root, remove } = await tempRoot('proxy-bin');
  const server = await startSnapshotterServer({ type: 'native', dir: root });
  const snapshotter = connectSnapshotter(server.address, 'mysnap');
  return {
    snapshotter,
    ctx: {},
    cleanup: async () => {
      await snapshotter.close();
      expect(await server.stop()).toBe(0);
      await remove();
    },
  };
});

describe('snapshots gRPC service', () => {
  let root: string;
  let remove: () => Promise<void>;
  beforeEach(async () => {
    ({ root, remove } = await tempRoot('proxy-errors'));
  });
  afterEach(() => remove());

  async function served(backing: Snapshotter, resolve?: (name: string) => Snapshotter) {
    const address = join(root, 'sn.sock');
    const server = new Server();
    const unexpected: string[] = [];
    server.addService(
      snapshotsServiceDefinition(),
      snapshotsServiceHandlers(resolve ?? (() => backing), {
        onUnexpectedError: (m, e) => unexpected.push(`${m}: ${(e as Error).message}`),
      }),
    );
    await server.listen(address);
    return { address, unexpected, close: () => server.shutdown() };
  }

  it('keeps error codes and messages across the wire, and reports unexpected ones', async () => {
    const backing = await openNativeSnapshotter(join(root, 'native'));
    const s = await served(backing);
    const sn = connectSnapshotter(s.address, 'native');
    try {
      await expect(sn.stat({}, 'nope')).rejects.toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: 'snapshot nope does not exist: not found',
      });
      await sn.prepare({}, 'a', '');
      await expect(sn.prepare({}, 'a', '')).rejects.toMatchObject({ code: 'ERR_ALREADY_EXISTS' });
      await expect(sn.prepare({}, 'b', 'a')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await sn.commit({}, 'base', 'a', { labels: { x: '1' } });
      await sn.prepare({}, 'child', 'base');
      await expect(sn.remove({}, 'base')).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
      await expect(sn.update({}, { name: 'base', labels: {} }, ['kind'])).rejects.toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
      const info = await sn.update({}, { name: 'base', labels: { y: '2' } }, ['labels.y']);
      expect(info).toMatchObject({ kind: 'committed', name: 'base', parent: '', labels: { x: '1', y: '2' } });
      expect(await sn.stat({}, 'child')).toMatchObject({ kind: 'active', parent: 'base' });
      await sn.cleanup({});
      expect(s.unexpected).toEqual([]);
    } finally {
      await sn.close();
      await s.close();
      await backing.close();
    }
  });

  it('answers NotImplemented for Cleanup without a cleaner and names the snapshotter it cannot resolve', async () => {
    const backing = await openNativeSnapshotter(join(root, 'native'));
    const plain: Snapshotter = {
      stat: (c, k) => backing.stat(c, k),
      update: (c, i, p) => backing.update(c, i, p),
      usage: (c, k) => backing.usage(c, k),
      mounts: (c, k) => backing.mounts(c, k),
      prepare: (c, k, p, o) => backing.prepare(c, k, p, o),
      view: (c, k, p, o) => backing.view(c, k, p, o),
      commit: (c, n, k, o) => backing.commit(c, n, k, o),
      remove: (c, k) => backing.remove(c, k),
      walk: (c, f, fl) => backing.walk(c, f, fl),
      close: () => backing.close(),
    };
    const s = await served(plain, (name) => {
      if (name === 'plain') return plain;
      if (name === 'broken') throw new Error('kaboom');
      throw new NotFoundError(`snapshotter ${name} not here`);
    });
    try {
      await expect(connectSnapshotter(s.address, 'plain').cleanup({})).rejects.toMatchObject({
        code: 'ERR_NOT_IMPLEMENTED',
        message: 'snapshotter does not implement Cleanup method: not implemented',
      });
      await expect(connectSnapshotter(s.address, 'other').stat({}, 'k')).rejects.toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: 'snapshotter other not here: not found',
      });
      await expect(connectSnapshotter(s.address, 'broken').stat({}, 'k')).rejects.toMatchObject({
        code: 'ERR_UNKNOWN',
        message: 'kaboom',
      });
      expect(s.unexpected).toEqual(['Stat: kaboom']);
      const walked: string[] = [];
      await expect(
        connectSnapshotter(s.address, 'other').walk({}, (i) => void walked.push(i.name)),
      ).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    } finally {
      await s.close();
      await backing.close();
    }
  });

  it('lists more than one message worth of snapshots, with filters', async () => {
    const backing = await openNativeSnapshotter(join(root, 'native'));
    const s = await served(backing);
    const sn = connectSnapshotter(s.address, 'native');
    try {
      for (let i = 0; i < 250; i++)
        await sn.prepare({}, `k${String(i).padStart(3, '0')}`, '', { labels: { odd: String(i % 2) } });
      const all: string[] = [];
      await sn.walk({}, (i) => void all.push(i.name));
      expect(all.sort()).toHaveLength(250);
      const odd: string[] = [];
      await sn.walk({}, (i) => void odd.push(i.name), ['labels.odd==1']);
      expect(odd).toHaveLength(125);
      // A consumer that throws stops the walk with its own error.
      await expect(
        sn.walk({}, () => {
          throw new Error('enough');
        }),
      ).rejects.toThrow('enough');
    } finally {
      await sn.close();
      await s.close();
      await backing.close();
    }
  });

  it('replaces a stale socket but never a file that is not one', async () => {
    const backing = await openNativeSnapshotter(join(root, 'native'));
    const first = await serveSnapshotter(backing, { address: join(root, 'a.sock') });
    // A crashed server leaves its socket behind: simulate by serving again on it.
    const second = await serveSnapshotter(backing, { address: `unix://${join(root, 'a.sock')}` });
    await first.close(0);
    await second.close();
    await writeFile(join(root, 'plain'), 'x');
    await expect(serveSnapshotter(backing, { address: join(root, 'plain') })).rejects.toMatchObject({
      code: 'ERR_ALREADY_EXISTS',
    });
    await backing.close();
  });
});

describe('bin/berth-snapshotter', () => {
  it('serves until SIGTERM and removes its socket', async () => {
    const dir = await mkdtemp(join((await tempRoot('bin')).root, 'x-'));
    const server = await startSnapshotterServer({ dir });
    const sn = connectSnapshotter(server.address, 'overlayfs');
    await sn.prepare({}, 'k', '');
    expect((await sn.stat({}, 'k')).kind).toBe('active');
    await sn.close();
    expect(await server.stop()).toBe(0);
    expect(server.logs()).toMatch(/serving overlayfs at .* on .*snapshotter\.sock/);
    await expect(import('node:fs/promises').then((fs) => fs.access(server.address))).rejects.toThrow(
      /ENOENT/,
    );
    await rm(dir, { recursive: true, force: true });
  });
});
