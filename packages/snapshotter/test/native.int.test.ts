import { randomBytes } from 'node:crypto';
import { chmod, lstat, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type NativeSnapshotter, openNativeSnapshotter } from '@berth/snapshotter';
import {
  apply,
  checkDirectoryEqual,
  chown,
  createDir,
  createFile,
  link,
  mkchardev,
  mkfifo,
  runSnapshotterSuite,
  setTimes,
  setXattr,
  symlink,
} from '@berth/snapshotter/testing';
import { mknod, withTempMount } from '@berth/sys';
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

describe('native specifics', () => {
  const ctx = {};
  let root: string;
  let removeRoot: () => Promise<void>;
  let sn: NativeSnapshotter;

  beforeEach(async () => {
    ({ root, remove: removeRoot } = await tempRoot('native-specific'));
    sn = await openNativeSnapshotter(root);
  });
  afterEach(async () => {
    await sn.close();
    await removeRoot();
  });

  const snapshots = () => join(root, 'snapshots');
  async function newDirs<T>(fn: () => Promise<T>): Promise<[T, string[]]> {
    const before = await readdir(snapshots());
    const out = await fn();
    return [out, (await readdir(snapshots())).filter((d) => !before.includes(d))];
  }

  test('mounts are binds: an active snapshot of its own copy, a view of its parent directly', async () => {
    const [p0, [d0]] = await newDirs(() => sn.prepare(ctx, 'p0'));
    expect(p0).toEqual([{ type: 'bind', source: join(snapshots(), d0!), options: ['rbind', 'rw'] }]);
    expect((await stat(join(snapshots(), d0!))).mode & 0o777).toBe(0o755);
    await sn.commit(ctx, 'c0', 'p0');

    const [v1, noDirs] = await newDirs(() => sn.view(ctx, 'v1', 'c0'));
    expect(noDirs).toEqual([]);
    expect(v1).toEqual([{ type: 'bind', source: join(snapshots(), d0!), options: ['rbind', 'ro'] }]);
    const [v0, [dv]] = await newDirs(() => sn.view(ctx, 'v0'));
    expect(v0).toEqual([{ type: 'bind', source: join(snapshots(), dv!), options: ['rbind', 'ro'] }]);
    const [p1, [d1]] = await newDirs(() => sn.prepare(ctx, 'p1', 'c0'));
    expect(p1).toEqual([{ type: 'bind', source: join(snapshots(), d1!), options: ['rbind', 'rw'] }]);
    expect(await sn.mounts(ctx, 'p1')).toEqual(p1);
  });

  test('a child starts as a faithful copy of its parent', async () => {
    const when = Date.UTC(2010, 5, 6, 7, 8, 9, 123) / 1000 + 0.000456;
    const build = apply(
      createDir('/d', 0o2775),
      chown('/d', 5, 6),
      createFile('/d/f', 'content', 0o4711),
      createFile('/d/big', randomBytes(1 << 20), 0o600),
      link('/d/f', '/d/f2'),
      symlink('../d/f', '/d/sym'),
      mkfifo('/d/fifo', 0o620),
      mkchardev('/d/tty', 0o600, 5, 0),
      setXattr('/d/f', 'user.a', 'A'),
      setXattr('/d', 'trusted.b', 'B'),
      setTimes('/d/f', when, when),
      setTimes('/d/sym', when, when),
    );
    await withTempMount(await sn.prepare(ctx, 'base-a'), async (dir) => {
      await build(dir);
      mknod(join(dir, 'sock'), 0o140000 | 0o755);
      await chmod(dir, 0o750);
      await chown('/', 7, 8)(dir);
    });
    await sn.commit(ctx, 'base', 'base-a');
    const [parentDir] = (await readdir(snapshots())).filter((d) => /^[0-9]+$/.test(d));
    const [, [childDir]] = await newDirs(() => sn.prepare(ctx, 'child', 'base'));
    const parent = join(snapshots(), parentDir!);
    const child = join(snapshots(), childDir!);
    await checkDirectoryEqual(parent, child, { mtimes: true });
    // times to the microsecond, directories included
    for (const p of ['d/f', 'd/sym', 'd']) {
      const [a, b] = await Promise.all([
        lstat(join(parent, p), { bigint: true }),
        lstat(join(child, p), { bigint: true }),
      ]);
      expect({ p, mtime: b.mtimeNs / 1000n }).toEqual({ p, mtime: a.mtimeNs / 1000n });
    }
    // a copy, not a share: writing the child leaves the parent alone
    await writeFile(join(child, 'd', 'f'), 'changed');
    expect(await readFile(join(parent, 'd', 'f'), 'utf8')).toBe('content');
    // the copy's usage is the whole tree, as containerd's native snapshotter reports it
    expect((await sn.usage(ctx, 'child')).size).toBeGreaterThanOrEqual(1 << 20);
  });

  test('removing a parent while a child copies it fails the copy cleanly', async () => {
    await withTempMount(await sn.prepare(ctx, 'base-a'), async (dir) => {
      for (let i = 0; i < 200; i++) await writeFile(join(dir, `f${i}`), randomBytes(4096));
    });
    await sn.commit(ctx, 'base', 'base-a');
    // The removal commits while the copy is under way (its metadata step never waits):
    // the copy must fail NotFound and leave neither a record nor a directory behind.
    const [prep, rem] = await Promise.allSettled([sn.prepare(ctx, 'child', 'base'), sn.remove(ctx, 'base')]);
    expect(rem.status).toBe('fulfilled');
    expect(prep).toMatchObject({ status: 'rejected', reason: { code: 'ERR_NOT_FOUND' } });
    await expect(sn.stat(ctx, 'child')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect((await readdir(snapshots())).filter((d) => !/^[0-9]+$/.test(d))).toEqual([]);
  });
});
