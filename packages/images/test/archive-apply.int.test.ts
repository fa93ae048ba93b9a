// Needs root: chown to other ids, mknod of devices, trusted.* xattrs, overlay mounts.
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OVERLAY_OPAQUE_XATTR, treeDigest } from '@berth/images';
import { lgetxattr, llistxattr, withTempMount } from '@berth/sys';
import { apply, cleanupTempDirs, layer, tempDir } from './helpers';

afterEach(cleanupTempDirs);

const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_raw+ep
const CAP_HIGH = Buffer.from('01000002800000000000000000000000000000ff', 'hex'); // bytes >= 0x80

describe('applyLayer as root', () => {
  it('keeps owners, binary xattrs and device nodes; never takes trusted.* from a layer', async () => {
    const root = await tempDir();
    await apply(
      layer([
        { name: 'home/', type: 'dir', mode: 0o750, uid: 1000, gid: 1000, xattrs: { 'user.dir': 'd' } },
        {
          name: 'home/ping',
          type: 'file',
          mode: 0o4755,
          uid: 1000,
          gid: 1001,
          data: 'elf',
          xattrs: { 'security.capability': CAP },
        },
        {
          name: 'home/high',
          type: 'file',
          mode: 0o755,
          data: 'elf',
          xattrs: { 'security.capability': CAP_HIGH },
        },
        { name: 'home/sym', type: 'symlink', linkname: 'ping', uid: 1002, gid: 1003, mode: 0o777 },
        { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
        { name: 'dev/loop0', type: 'block', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 },
        { name: 'evil/', type: 'dir', xattrs: { [OVERLAY_OPAQUE_XATTR]: 'y', 'trusted.other': 'x' } },
      ]),
      root,
    );
    const home = await stat(join(root, 'home'));
    expect([home.uid, home.gid, home.mode & 0o7777]).toEqual([1000, 1000, 0o750]);
    expect(lgetxattr(join(root, 'home'), 'user.dir')?.toString()).toBe('d');
    const ping = await stat(join(root, 'home/ping'));
    // chown before chmod: the setuid bit and the capability both survive
    expect([ping.uid, ping.gid, ping.mode & 0o7777]).toEqual([1000, 1001, 0o4755]);
    expect(lgetxattr(join(root, 'home/ping'), 'security.capability')).toEqual(CAP);
    expect(lgetxattr(join(root, 'home/high'), 'security.capability')).toEqual(CAP_HIGH);
    const sym = await lstat(join(root, 'home/sym'));
    expect([sym.uid, sym.gid]).toEqual([1002, 1003]);
    const nul = await lstat(join(root, 'dev/null'));
    expect(nul.isCharacterDevice()).toBe(true);
    expect(nul.rdev).toBe(0x103);
    expect((await lstat(join(root, 'dev/loop0'))).isBlockDevice()).toBe(true);
    expect(llistxattr(join(root, 'evil')).filter((x) => x.startsWith('trusted.'))).toEqual([]);
  });

  it('overlay whiteouts read through an overlay mount like direct ones', async () => {
    const base = await tempDir();
    const [lower, upper, work, direct] = ['lower', 'upper', 'work', 'direct'].map((d) => join(base, d));
    for (const d of [lower, upper, work, direct]) await mkdir(d);
    const l1 = layer([
      { name: 'etc/', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
      { name: 'etc/a', type: 'file', data: 'a' },
      { name: 'etc/b', type: 'file', data: 'b' },
      { name: 'var/', type: 'dir' },
      { name: 'var/cache/', type: 'dir' },
      { name: 'var/cache/old', type: 'file', data: 'old' },
      { name: 'gone/', type: 'dir' },
      { name: 'gone/f', type: 'file' },
    ]);
    const l2 = layer([
      { name: 'etc/c', type: 'file', data: 'c' }, // parent etc/ not in this layer: copied up from the lower
      { name: 'etc/.wh.a', type: 'file' },
      { name: 'var/cache/.wh..wh..opq', type: 'file' },
      { name: 'var/cache/new', type: 'file', data: 'new' },
      { name: '.wh.gone', type: 'file' },
    ]);
    await apply(l1, lower);
    await apply(l2, upper, { whiteouts: 'overlay', parents: [lower] });

    const wh = await lstat(join(upper, 'etc/a'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect(lgetxattr(join(upper, 'var/cache'), OVERLAY_OPAQUE_XATTR)?.toString()).toBe('y');
    const etc = await stat(join(upper, 'etc'));
    expect([etc.uid, etc.gid, etc.mode & 0o7777]).toEqual([1000, 1000, 0o700]);

    await apply(l1, direct);
    await apply(l2, direct);
    const mounts = [
      {
        type: 'overlay',
        source: 'overlay',
        options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`],
      },
    ];
    await withTempMount(mounts, async (merged) => {
      expect((await readdir(join(merged, 'etc'))).sort()).toEqual(['b', 'c']);
      expect(await readdir(join(merged, 'var/cache'))).toEqual(['new']);
      expect(await readFile(join(merged, 'var/cache/new'), 'utf8')).toBe('new');
      expect((await readdir(merged)).sort()).toEqual(['etc', 'var']);
      expect((await treeDigest(merged)).entries).toEqual((await treeDigest(direct)).entries);
    });
  });

  it('gives the same tree as GNU tar for the same layer', async () => {
    const tar = layer([
      { name: 'etc/', type: 'dir', mode: 0o751, uid: 12, gid: 34 },
      { name: 'etc/conf', type: 'file', mode: 0o640, uid: 1000, gid: 50, data: 'conf' },
      { name: 'usr/', type: 'dir' },
      { name: 'usr/bin/', type: 'dir', mode: 0o711 },
      {
        name: 'usr/bin/tool',
        type: 'file',
        mode: 0o4711,
        data: 'tool',
        xattrs: { 'security.capability': CAP, 'user.note': 'n' },
      },
      { name: 'usr/bin/alias', type: 'link', linkname: 'usr/bin/tool', mode: 0o4711 },
      { name: 'usr/lib', type: 'symlink', linkname: '../lib', uid: 3, gid: 4 },
      { name: 'dev/', type: 'dir' },
      { name: 'dev/zero', type: 'char', mode: 0o666, devmajor: 1, devminor: 5 },
      { name: 'run/', type: 'dir', mode: 0o700 },
      { name: 'run/pipe', type: 'fifo', mode: 0o600 },
    ]);
    const d = await tempDir();
    const [ours, gnu] = [join(d, 'ours'), join(d, 'gnu')];
    await mkdir(ours);
    await mkdir(gnu);
    await apply(tar, ours);
    execFileSync(
      'tar',
      ['-x', '--same-owner', '--same-permissions', '--xattrs', '--xattrs-include=*', '-C', gnu],
      { input: tar },
    );
    // GNU tar does not restore security.capability here: leave it out (the test above checks ours).
    const xattrFilter = (n: string) => n !== 'security.capability';
    const a = await treeDigest(ours, { mtimes: true, xattrFilter });
    const b = await treeDigest(gnu, { mtimes: true, xattrFilter });
    expect(a.entries.slice(1)).toEqual(b.entries.slice(1));
  });

  it('overlay mode replaces something already at a whiteout path', async () => {
    const upper = await tempDir();
    await writeFile(join(upper, 'x'), 'was here');
    await apply(layer([{ name: '.wh.x', type: 'file', uid: 5, gid: 6 }]), upper, { whiteouts: 'overlay' });
    const st = await lstat(join(upper, 'x'));
    expect([st.isCharacterDevice(), st.rdev, st.uid, st.gid]).toEqual([true, 0, 5, 6]);
  });
});
