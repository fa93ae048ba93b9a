import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSnapshotCleaner } from '@berth/api';
import {
  type LocalSnapshotter,
  type LocalSnapshotterOptions,
  openNativeSnapshotter,
  openOverlaySnapshotter,
} from '@berth/snapshotter';
import { withTempMount } from '@berth/sys';
import BetterSqlite3 from 'better-sqlite3';
import { tempRoot } from './helpers';

// What the overlay and native snapshotters share: crash recovery, removal, reopening.
const kinds: [string, (root: string, opts?: LocalSnapshotterOptions) => Promise<LocalSnapshotter>][] = [
  ['overlayfs', openOverlaySnapshotter],
  ['native', openNativeSnapshotter],
];

describe.each(kinds)('%s snapshotter on disk', (_name, open) => {
  const ctx = {};
  let root: string;
  let removeRoot: () => Promise<void>;
  let sn: LocalSnapshotter;

  beforeEach(async () => {
    ({ root, remove: removeRoot } = await tempRoot('local-snapshotter'));
    sn = await open(root);
  });
  afterEach(async () => {
    await sn.close();
    await removeRoot();
  });

  const listing = async () => (await readdir(join(root, 'snapshots'))).sort();
  const reopen = async (opts?: LocalSnapshotterOptions) => {
    await sn.close();
    sn = await open(root, opts);
  };
  /** A committed snapshot holding /file with content; returns the directory names it added. */
  async function committedWith(name: string, content: string, parent = ''): Promise<string[]> {
    const before = await listing();
    const mounts = await sn.prepare(ctx, `${name}-active`, parent);
    await withTempMount(mounts, (dir) => writeFile(join(dir, 'file'), content));
    await sn.commit(ctx, name, `${name}-active`);
    return (await listing()).filter((d) => !before.includes(d));
  }
  async function readThroughView(parent: string): Promise<string> {
    const key = `read-${parent}-${Math.random()}`;
    const mounts = await sn.view(ctx, key, parent);
    try {
      return await withTempMount(mounts, (dir) => readFile(join(dir, 'file'), 'utf8'));
    } finally {
      await sn.remove(ctx, key);
    }
  }

  test('remove deletes the directory and leaves nothing behind', async () => {
    const [dirA] = await committedWith('a', 'A');
    expect(dirA).toMatch(/^[0-9]+$/);
    await sn.remove(ctx, 'a');
    expect(await listing()).toEqual([]);
    await expect(sn.stat(ctx, 'a')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  test('asyncRemove hides the snapshot at once and frees its space on cleanup()', async () => {
    await reopen({ asyncRemove: true });
    const [dirA] = await committedWith('a', 'A');
    await committedWith('b', 'B');
    await sn.remove(ctx, 'a');
    await expect(sn.stat(ctx, 'a')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(await listing()).toContain(`rm-${dirA}`);
    expect(isSnapshotCleaner(sn)).toBe(true);
    await sn.cleanup(ctx);
    expect(await listing()).not.toContain(`rm-${dirA}`);
    expect(await readThroughView('b')).toBe('B');
    // the key is free again at once
    await sn.prepare(ctx, 'a', '');
  });

  test('a crash while deleting a removed snapshot: the rest is cleaned up at the next open', async () => {
    await reopen({ asyncRemove: true });
    const [dirA] = await committedWith('a', 'A');
    await committedWith('b', 'B');
    await sn.remove(ctx, 'a');
    // half deleted, then the process died
    await rm(join(root, 'snapshots', `rm-${dirA}`, _name === 'native' ? 'file' : 'fs/file'));
    await reopen();
    expect(await listing()).not.toContain(`rm-${dirA}`);
    await expect(sn.stat(ctx, 'a')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(await readThroughView('b')).toBe('B');
  });

  test('a crash between moving the directory aside and committing the removal: the snapshot comes back whole', async () => {
    const [dirA] = await committedWith('a', 'A');
    await sn.close();
    // the rename happened inside the transaction, which never committed
    await rename(join(root, 'snapshots', dirA!), join(root, 'snapshots', `rm-${dirA}`));
    sn = await open(root);
    expect(await listing()).toContain(dirA);
    expect(await readThroughView('a')).toBe('A');
  });

  test('a crash mid-prepare or mid-commit of the record: leftovers go at the next open, never show', async () => {
    await committedWith('a', 'A');
    await sn.close();
    const snaps = join(root, 'snapshots');
    await mkdir(join(snaps, 'new-crashed', 'fs'), { recursive: true });
    await writeFile(join(snaps, 'new-crashed', 'fs', 'junk'), 'x');
    await mkdir(join(snaps, '999999')); // renamed into place, transaction lost
    sn = await open(root);
    const left = await listing();
    expect(left).not.toContain('new-crashed');
    expect(left).not.toContain('999999');
    const all: string[] = [];
    await sn.walk(ctx, (i) => void all.push(i.name));
    expect(all).toEqual(['a']);
    await committedWith('b', 'B', 'a');
    expect(await readThroughView('b')).toBe('B');
  });

  test('a failed prepare leaves no directory behind', async () => {
    await committedWith('a', 'A');
    await sn.prepare(ctx, 'active', 'a');
    const before = await listing();
    await expect(sn.prepare(ctx, 'x', 'missing')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    await expect(sn.prepare(ctx, 'x', 'active')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(sn.prepare(ctx, 'active', 'a')).rejects.toMatchObject({ code: 'ERR_ALREADY_EXISTS' });
    expect(await listing()).toEqual(before);
  });

  test('concurrent prepares of one key: one wins, the others fail AlreadyExists, nothing leaks', async () => {
    await committedWith('a', 'A');
    const before = await listing();
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => sn.prepare(ctx, 'same', 'a')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r) => r.status === 'rejected')) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_ALREADY_EXISTS' });
    }
    expect((await listing()).length).toBe(before.length + 1);
    expect((await listing()).filter((d) => d.startsWith('new-'))).toEqual([]);
  });

  test('cleanup() while a snapshot is being built leaves it alone', async () => {
    await reopen({ asyncRemove: true });
    await withTempMount(await sn.prepare(ctx, 'base-a'), async (dir) => {
      for (let i = 0; i < 100; i++) await writeFile(join(dir, `f${i}`), String(i));
    });
    await sn.commit(ctx, 'base', 'base-a');
    await committedWith('doomed', 'x');
    await sn.remove(ctx, 'doomed');
    const building = sn.prepare(ctx, 'child', 'base');
    await sn.cleanup(ctx);
    const mounts = await building;
    expect(await withTempMount(mounts, async (dir) => (await readdir(dir)).length)).toBe(100);
    expect((await listing()).filter((d) => !/^[0-9]+$/.test(d))).toEqual([]);
  });

  test('everything survives close and reopen', async () => {
    await committedWith('a', 'A');
    const mounts = await sn.prepare(ctx, 'act', 'a', { labels: { x: 'y' } });
    const before = await sn.stat(ctx, 'act');
    await reopen();
    expect(await sn.stat(ctx, 'act')).toEqual(before);
    expect(await sn.mounts(ctx, 'act')).toEqual(mounts);
    expect(await readThroughView('a')).toBe('A');
  });

  test('a closed snapshotter refuses calls', async () => {
    await sn.close();
    await expect(sn.stat(ctx, 'a')).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
    await expect(sn.prepare(ctx, 'a')).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
    await expect(sn.walk(ctx, () => {})).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
  });

  test('a newer metadata schema is refused at open', async () => {
    await sn.close();
    const db = new BetterSqlite3(join(root, 'metadata.db'));
    db.pragma('user_version = 42');
    db.close();
    await expect(open(root)).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
    sn = await open(join(root, 'fresh'));
  });
});
