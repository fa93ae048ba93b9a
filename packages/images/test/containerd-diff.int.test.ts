// Needs root (mounts) and Debian's containerd: berth's diff of a snapshot against containerd's.

import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Context, Mount } from '@berth/api';
import { MediaTypes, readonlyMounts, writeDiff } from '@berth/images';
import { withTempMount } from '@berth/sys';
import { containerdInstalled, type Daemon, startContainerd } from '@berth/testkit';
import { MemoryContent } from './memory-content';

const ctx: Context = { namespace: 'default' };
const run = containerdInstalled() ? describe : describe.skip;

/** The header blocks of a tar (extended headers included), by offset. */
function headerOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  for (let o = 0; o + 512 <= tar.length; ) {
    const block = tar.subarray(o, o + 512);
    if (block.every((b) => b === 0)) break;
    out.push(o);
    const size = Number.parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/, '') || '0', 8);
    o += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** A copy with the mtime (and so the checksum) of whiteout headers blanked: containerd stamps them with its clock. */
function withoutWhiteoutTimes(tar: Buffer): Buffer {
  const copy = Buffer.from(tar);
  for (const o of headerOffsets(copy)) {
    const name = copy.toString('latin1', o, o + 100).replace(/\0.*$/, '');
    if (name.split('/').pop()!.startsWith('.wh.')) copy.fill(0x20, o + 136, o + 156);
  }
  return copy;
}

run("berth's diff is containerd's", () => {
  let containerd: Daemon;
  const C = (...args: string[]): Buffer =>
    execFileSync('ctr', ['--address', containerd.address, '-n', 'default', ...args], {
      maxBuffer: 64 << 20,
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  /** The mounts of a snapshot, from `ctr snapshots mounts` ("mount -t TYPE SOURCE TARGET -o OPTS"). */
  const mountsOf = (key: string): Mount[] =>
    C('snapshots', 'mounts', '/target', key)
      .toString()
      .trim()
      .split('\n')
      .map((line) => {
        const m = /^mount -t (\S+) (\S+) \/target -o (\S+)$/.exec(line);
        if (!m) throw new Error(`unexpected mount line ${line}`);
        return { type: m[1]!, source: m[2]!, options: m[3]!.split(',') };
      });

  beforeAll(async () => {
    containerd = await startContainerd();
  });
  afterAll(async () => {
    await containerd?.dispose();
  });

  it('byte for byte (whiteout times aside) on names, links, devices, owners and xattrs that need PAX', async () => {
    const longDir = `${'d'.repeat(60)}/${'e'.repeat(60)}`;
    C('snapshots', 'prepare', 'base', '');
    await withTempMount(mountsOf('base'), async (m) => {
      await mkdir(join(m, 'etc'));
      await writeFile(join(m, 'etc/keep'), 'keep');
      await writeFile(join(m, 'etc/gone'), 'gone');
      await mkdir(join(m, 'var/lib/deep'), { recursive: true });
      await writeFile(join(m, 'var/lib/old'), 'old');
      await writeFile(join(m, 'var/lib/deep/f'), 'f');
      await mkdir(join(m, longDir), { recursive: true });
    });
    C('snapshots', 'commit', 'base1', 'base');
    C('snapshots', 'prepare', 'top', 'base1');
    await withTempMount(mountsOf('top'), async (m) => {
      await rm(join(m, 'etc/gone'));
      await rm(join(m, 'var/lib'), { recursive: true });
      await mkdir(join(m, 'var/lib'));
      await writeFile(join(m, 'var/lib/fresh'), 'fresh');
      // a long directory path splits into ustar prefix and name; a long file with an xattr goes PAX
      const tool = join(m, longDir, `${'t'.repeat(50)}-tool`);
      await writeFile(tool, 'tool');
      await chmod(tool, 0o4755);
      execFileSync('setcap', ['cap_net_raw+ep', tool]);
      await link(tool, join(m, 'etc/tool-link'));
      await writeFile(join(m, `${'n'.repeat(120)}`), 'unsplittable');
      await writeFile(join(m, 'etc/naïve-名前'), 'utf-8 name');
      await symlink(`/${'l'.repeat(150)}`, join(m, 'etc/long-target'));
      await symlink('keep', join(m, 'etc/short-target'));
      await writeFile(join(m, 'etc/big-ids'), 'ids');
      await chown(join(m, 'etc/big-ids'), 3_000_000, 4_000_000);
      execFileSync('mkfifo', [join(m, 'etc/fifo')]);
      execFileSync('mknod', [join(m, 'etc/null'), 'c', '1', '3']);
      await mkdir(join(m, 'tmp'), { mode: 0o1777 });
      await chmod(join(m, 'tmp'), 0o1777);
    });

    const theirs = C('snapshots', 'diff', '--media-type', MediaTypes.ociLayer, 'top');
    // base1 itself as lower (a view would need a GC root to survive the diff's collection)
    const top = mountsOf('top');
    const lowerdir = top[0]!.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length);
    const lower: Mount[] = [{ type: 'bind', source: lowerdir, options: ['rbind', 'ro'] }];
    const content = new MemoryContent();
    // read-only upper: the double walk, as containerd 1.6's walking differ does
    const desc = await writeDiff(ctx, lower, readonlyMounts(top), content, {
      mediaType: MediaTypes.ociLayer,
    });
    const ours = content.blobs.get(desc.digest)!.data;

    // the cases this is about are there: PAX headers, a ustar prefix, whiteouts
    const text = ours.toString('latin1');
    expect(text).toContain('PaxHeaders.0');
    expect(text).toContain('SCHILY.xattr.security.capability');
    expect(text).toContain('etc/.wh.gone');
    expect(text).toContain('var/lib/.wh.old');
    expect(headerOffsets(ours).length).toBe(headerOffsets(theirs).length);
    expect(withoutWhiteoutTimes(ours).equals(withoutWhiteoutTimes(theirs))).toBe(true);
  });
});
