import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { SnapshotInfo } from '@berth/api';
import {
  defaultOverlayConfig,
  needsUserXattr,
  type OverlaySnapshotter,
  openOverlaySnapshotter,
  overlayFromConfig,
  runningInUserNS,
  supportsIndex,
  UPPERDIR_LABEL,
} from '@berth/snapshotter';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { withTempMount } from '@berth/sys';
import { tempRoot } from './helpers';

const run = promisify(execFile);

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

describe('overlayfs specifics', () => {
  const ctx = {};
  let root: string;
  let removeRoot: () => Promise<void>;
  let sn: OverlaySnapshotter;

  beforeEach(async () => {
    ({ root, remove: removeRoot } = await tempRoot('overlay-specific'));
    sn = await openOverlaySnapshotter(root, { upperdirLabel: true });
  });
  afterEach(async () => {
    await sn.close();
    await removeRoot();
  });

  const upper = async (key: string) => (await sn.stat(ctx, key)).labels[UPPERDIR_LABEL]!;
  const index = supportsIndex() ? ['index=off'] : [];
  async function commitEmpty(name: string, parent = ''): Promise<string> {
    await sn.prepare(ctx, `${name}-a`, parent);
    const fs = await upper(`${name}-a`);
    await sn.commit(ctx, name, `${name}-a`);
    expect(await upper(name)).toBe(fs); // the directory stays where it was
    return fs;
  }

  test('layout: <root>/snapshots/<id>/{fs,work}, a view has no work directory', async () => {
    await sn.prepare(ctx, 'active');
    const fs = await upper('active');
    expect(fs).toMatch(new RegExp(`^${root}/snapshots/[0-9]+/fs$`));
    expect((await stat(fs)).mode & 0o777).toBe(0o755);
    expect((await stat(join(dirname(fs), 'work'))).mode & 0o777).toBe(0o711);
    await sn.view(ctx, 'view');
    await expect(stat(join(dirname(await upper('view')), 'work'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('mounts: binds without parents or for one-layer views, overlay otherwise', async () => {
    const l1 = await commitEmpty('l1');
    const l2 = await commitEmpty('l2', 'l1');

    expect(await sn.prepare(ctx, 'p0')).toEqual([
      { type: 'bind', source: await upper('p0'), options: ['rw', 'rbind'] },
    ]);
    expect(await sn.view(ctx, 'v0')).toEqual([
      { type: 'bind', source: await upper('v0'), options: ['ro', 'rbind'] },
    ]);
    expect(await sn.view(ctx, 'v1', 'l1')).toEqual([{ type: 'bind', source: l1, options: ['ro', 'rbind'] }]);

    const p1 = await sn.prepare(ctx, 'p1', 'l1');
    const fs1 = await upper('p1');
    expect(p1).toEqual([
      {
        type: 'overlay',
        source: 'overlay',
        options: [...index, `workdir=${join(dirname(fs1), 'work')}`, `upperdir=${fs1}`, `lowerdir=${l1}`],
      },
    ]);
    const p2 = await sn.prepare(ctx, 'p2', 'l2');
    const fs2 = await upper('p2');
    expect(p2[0]!.options).toEqual([
      ...index,
      `workdir=${join(dirname(fs2), 'work')}`,
      `upperdir=${fs2}`,
      `lowerdir=${l2}:${l1}`,
    ]);
    expect(await sn.view(ctx, 'v2', 'l2')).toEqual([
      { type: 'overlay', source: 'overlay', options: [...index, `lowerdir=${l2}:${l1}`] },
    ]);
    expect(await sn.mounts(ctx, 'p2')).toEqual(p2);
  });

  test('userxattr and extra mount options are passed on', async () => {
    await sn.close();
    sn = await openOverlaySnapshotter(root, {
      upperdirLabel: true,
      userxattr: true,
      mountOptions: ['volatile'],
    });
    await commitEmpty('l1');
    const [m] = await sn.prepare(ctx, 'p', 'l1');
    expect(m!.options.slice(0, index.length + 2)).toEqual([...index, 'userxattr', 'volatile']);
  });

  (runningInUserNS() ? test.skip : test)('on the host, userxattr is not used', async () => {
    expect(await needsUserXattr(root)).toBe(false);
    await commitEmpty('l1');
    const [m] = await sn.prepare(ctx, 'p', 'l1');
    expect(m!.options).not.toContain('userxattr');
  });

  test('the upperdir label is reported by stat, walk and update, and only on request', async () => {
    await sn.prepare(ctx, 'a', '', { labels: { x: '1' } });
    const fs = await upper('a');
    const walked: SnapshotInfo[] = [];
    await sn.walk(ctx, (i) => void walked.push(i));
    expect(walked[0]!.labels).toEqual({ x: '1', [UPPERDIR_LABEL]: fs });
    expect((await sn.update(ctx, { name: 'a', labels: { y: '2' } })).labels).toEqual({
      y: '2',
      [UPPERDIR_LABEL]: fs,
    });
    await sn.close();
    sn = await openOverlaySnapshotter(root);
    expect((await sn.stat(ctx, 'a')).labels).toEqual({ y: '2' });
  });

  test('usage counts the snapshot own layer as du does, hard links once', async () => {
    await commitEmpty('base');
    const mounts = await sn.prepare(ctx, 'a', 'base');
    expect(await sn.usage(ctx, 'a')).toEqual({ size: await duBytes(await upper('a')), inodes: 1 });
    await withTempMount(mounts, async (dir) => {
      await writeFile(join(dir, 'big'), randomBytes(300_000));
      await link(join(dir, 'big'), join(dir, 'big-link'));
      await mkdir(join(dir, 'sub'));
      await writeFile(join(dir, 'sub', 'small'), 'x');
    });
    const fs = await upper('a');
    const used = await sn.usage(ctx, 'a');
    expect(used).toEqual({ size: await duBytes(fs), inodes: 4 });
    expect(used.size).toBeGreaterThanOrEqual(300_000);
    expect(used.inodes).toBe(await duInodes(fs));

    await sn.commit(ctx, 'a-committed', 'a');
    expect(await sn.usage(ctx, 'a-committed')).toEqual(used);
    // a view adds nothing of its own
    await sn.view(ctx, 'v', 'a-committed');
    expect(await sn.usage(ctx, 'v')).toEqual({ size: 0, inodes: 0 });
  });

  test('a chain whose lowerdir option is longer than a page still mounts', async () => {
    await sn.close();
    await removeRoot();
    // a deep root makes each lowerdir entry long
    ({ root, remove: removeRoot } = await tempRoot('overlay-long'));
    const deep = join(root, 'a-rather-long-directory-name-to-stretch-every-path'.repeat(3));
    sn = await openOverlaySnapshotter(deep);
    let parent = '';
    for (let i = 0; i < 140; i++) {
      const mounts = await sn.prepare(ctx, `l${i}-a`, parent);
      await withTempMount(mounts, (dir) => writeFile(join(dir, `layer-${i}`), String(i)));
      await sn.commit(ctx, `l${i}`, `l${i}-a`);
      parent = `l${i}`;
    }
    const view = await sn.view(ctx, 'top', parent);
    const lower = view[0]!.options.find((o) => o.startsWith('lowerdir='))!;
    expect(lower.length).toBeGreaterThan(4096);
    expect(lower.split(':')).toHaveLength(140);
    const active = await sn.prepare(ctx, 'writable', parent);
    await withTempMount(view, async (dir) => {
      const files = (await readdir(dir)).sort();
      expect(files).toHaveLength(140);
      expect(await readFile(join(dir, 'layer-0'), 'utf8')).toBe('0');
      expect(await readFile(join(dir, 'layer-139'), 'utf8')).toBe('139');
    });
    await withTempMount(active, async (dir) => {
      await writeFile(join(dir, 'top'), 'written over 140 layers');
      expect((await readdir(dir)).length).toBe(141);
    });
  });

  test('config: the registration shape opens with containerd defaults (removal deferred to cleanup)', async () => {
    await sn.close();
    expect(defaultOverlayConfig()).toEqual({
      root_path: '',
      upperdir_label: false,
      sync_remove: false,
      mount_options: [],
    });
    sn = await overlayFromConfig(join(root, 'from-config'), defaultOverlayConfig());
    expect(sn.root).toBe(join(root, 'from-config'));
    await sn.prepare(ctx, 'a');
    await sn.remove(ctx, 'a');
    expect((await readdir(join(root, 'from-config', 'snapshots'))).some((d) => d.startsWith('rm-'))).toBe(
      true,
    );
    await sn.cleanup(ctx);
    expect(await readdir(join(root, 'from-config', 'snapshots'))).toEqual([]);
    await sn.close();
    sn = await overlayFromConfig(join(root, 'ignored'), {
      root_path: join(root, 'elsewhere'),
      sync_remove: true,
    });
    expect(sn.root).toBe(join(root, 'elsewhere'));
  });
});

async function duBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-s', '--block-size=1', dir]);
  return Number(stdout.split(/\s/)[0]);
}

async function duInodes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-s', '--inodes', dir]);
  return Number(stdout.split(/\s/)[0]);
}
