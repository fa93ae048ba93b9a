import { execFileSync } from 'node:child_process';
import { chmod, link, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyLayer, diffDirectories, readTar, treeDigest } from '@berth/images';
import { apply, cleanupTempDirs, layer, T0, tempDir } from './helpers';

afterEach(cleanupTempDirs);

async function tarNames(lower: string | undefined, upper: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of readTar(diffDirectories(lower, upper)))
    names.push(`${e.header.type} ${e.header.name}`);
  return names;
}

const base = layer([
  { name: 'etc/', type: 'dir' },
  { name: 'etc/hosts', type: 'file', data: '127.0.0.1 localhost\n' },
  { name: 'etc/same-size', type: 'file', data: 'aaaa' },
  { name: 'etc/gone', type: 'file', data: 'x' },
  { name: 'tree/', type: 'dir' },
  { name: 'tree/a/b/c', type: 'file', data: 'deep' },
  { name: 'dir2file/', type: 'dir' },
  { name: 'dir2file/child', type: 'file' },
  { name: 'bin/', type: 'dir' },
  { name: 'bin/busybox', type: 'file', mode: 0o755, data: 'bb' },
  { name: 'bin/sh', type: 'link', linkname: 'bin/busybox', mode: 0o755 },
  { name: 'bin/ls', type: 'link', linkname: 'bin/busybox', mode: 0o755 },
  { name: 'lnk', type: 'symlink', linkname: 'etc/hosts' },
]);

describe('diffDirectories', () => {
  it('round-trips: applying diff(lower, upper) onto lower gives upper', async () => {
    const d = await tempDir();
    const [lower, upper, replay] = ['lower', 'upper', 'replay'].map((n) => join(d, n));
    await mkdir(lower);
    await apply(base, lower);
    execFileSync('cp', ['-a', lower, upper]);
    execFileSync('cp', ['-a', lower, replay]);

    await writeFile(join(upper, 'etc/hosts'), '10.0.0.1 other\n');
    // same size, same whole-second mtime: only a content comparison finds it
    await writeFile(join(upper, 'etc/same-size'), 'bbbb');
    await utimes(join(upper, 'etc/same-size'), T0, T0);
    await rm(join(upper, 'etc/gone'));
    await rm(join(upper, 'tree'), { recursive: true });
    await rm(join(upper, 'dir2file'), { recursive: true });
    await writeFile(join(upper, 'dir2file'), 'file now');
    await chmod(join(upper, 'bin/busybox'), 0o4755);
    await mkdir(join(upper, 'new/sub'), { recursive: true });
    await writeFile(join(upper, 'new/sub/f'), 'new');
    await link(join(upper, 'new/sub/f'), join(upper, 'new/hl'));
    await rm(join(upper, 'lnk'));
    await symlink('/etc/hosts', join(upper, 'lnk'));

    const names = await tarNames(lower, upper);
    expect(names).toContain('file etc/.wh.gone');
    expect(names).toContain('file .wh.tree');
    expect(names.filter((n) => n.includes('tree/'))).toEqual([]);
    expect(names).toContain('file etc/same-size');
    expect(names).toContain('link new/sub/f');
    // bin/busybox changed mode: its unmodified hard links come along as links to it
    expect(names).toEqual(expect.arrayContaining(['file bin/busybox', 'link bin/ls', 'link bin/sh']));

    await applyLayer(diffDirectories(lower, upper), replay);
    expect((await treeDigest(replay)).entries).toEqual((await treeDigest(upper)).entries);
  });

  it('an unchanged tree gives an empty layer', async () => {
    const d = await tempDir();
    await mkdir(join(d, 'a'));
    await apply(base, join(d, 'a'));
    execFileSync('cp', ['-a', join(d, 'a'), join(d, 'b')]);
    expect(await tarNames(join(d, 'a'), join(d, 'b'))).toEqual([]);
  });

  it('without a lower, the layer holds the whole tree', async () => {
    const d = await tempDir();
    const [src, dst] = [join(d, 'src'), join(d, 'dst')];
    await mkdir(src);
    await mkdir(dst);
    await apply(base, src);
    await applyLayer(diffDirectories(undefined, src), dst);
    expect((await treeDigest(dst)).digest).toBe((await treeDigest(src)).digest);
  });
});

describe('treeDigest', () => {
  it('changes with content, mode, owner, link target and mtimes when asked', async () => {
    const d = await tempDir();
    await apply(base, d);
    const before = await treeDigest(d);
    expect(before.entries[0]).toMatch(/^\. dir /);
    expect(before.entries).toContain(
      `bin/ls file 755 0:0 hardlink=bin/busybox size=2 sha256=${
        before.entries
          .find((e) => e.startsWith('bin/busybox'))!
          .split('sha256=')[1]!
          .split(' ')[0]
      } xattrs=`,
    );
    const again = await treeDigest(d);
    expect(again.digest).toBe(before.digest);
    await chmod(join(d, 'etc/hosts'), 0o600);
    const chmodded = await treeDigest(d);
    expect(chmodded.digest).not.toBe(before.digest);
    await writeFile(join(d, 'etc/hosts'), 'other');
    expect((await treeDigest(d)).digest).not.toBe(chmodded.digest);
    const withTimes = await treeDigest(d, { mtimes: true });
    await utimes(join(d, 'etc/gone'), T0 + 5, T0 + 5);
    expect((await treeDigest(d, { mtimes: true })).digest).not.toBe(withTimes.digest);
    expect((await treeDigest(d)).digest).toBe((await treeDigest(d)).digest);
  });
});
