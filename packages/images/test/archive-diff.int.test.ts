// Needs root: overlay and bind mounts.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import type { Context, Digest, Mount } from '@berth/api';
import {
  applyLayer,
  diffDirectories,
  MediaTypes,
  readTar,
  treeDigest,
  UNCOMPRESSED_LABEL,
  walkTree,
  writeDiff,
} from '@berth/images';
import { withTempMount } from '@berth/sys';
import { apply, cleanupTempDirs, layer, tempDir } from './helpers';
import { MemoryContent } from './memory-content';

afterEach(cleanupTempDirs);

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const ctx: Context = { namespace: 'default' };

const base = layer([
  { name: 'etc/', type: 'dir', mode: 0o750, uid: 1000 },
  { name: 'etc/keep', type: 'file', data: 'keep' },
  { name: 'etc/rm', type: 'file', data: 'rm' },
  { name: 'var/', type: 'dir' },
  { name: 'var/lib/', type: 'dir' },
  { name: 'var/lib/old', type: 'file', data: 'old' },
  { name: 'bin/', type: 'dir' },
  { name: 'bin/tool', type: 'file', mode: 0o755, data: 'tool' },
]);

/** lower (applied from base), an overlay on it, changes made through the merged view. */
async function overlayWithChanges() {
  const d = await tempDir();
  const [lower, upper, work] = ['lower', 'upper', 'work'].map((n) => join(d, n));
  for (const p of [lower, upper, work]) await mkdir(p);
  await apply(base, lower);
  const overlay: Mount[] = [
    {
      type: 'overlay',
      source: 'overlay',
      options: [`workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower}`],
    },
  ];
  await withTempMount(overlay, async (m) => {
    await rm(join(m, 'etc/rm'));
    await writeFile(join(m, 'etc/new'), 'new');
    // removing and recreating a directory through overlayfs makes it opaque
    await rm(join(m, 'var/lib'), { recursive: true });
    await mkdir(join(m, 'var/lib'));
    await writeFile(join(m, 'var/lib/fresh'), 'fresh');
    execFileSync('setcap', ['cap_net_raw+ep', join(m, 'bin/tool')], { stdio: 'ignore' });
  });
  return { d, lower, upper, work, overlay };
}

async function mergedDigest(overlay: Mount[]) {
  return withTempMount(overlay, async (m) => treeDigest(m));
}

describe('diff of an overlay upper dir', () => {
  it('turns whiteout devices and opaque dirs into OCI whiteouts that apply back to the merged tree', async () => {
    const { d, lower, upper, overlay } = await overlayWithChanges();
    const names: string[] = [];
    for await (const e of readTar(diffDirectories(lower, upper, { upperKind: 'overlay' })))
      names.push(e.header.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'etc/',
        'etc/.wh.rm',
        'etc/new',
        'var/lib/',
        'var/lib/.wh..wh..opq',
        'var/lib/fresh',
      ]),
    );
    expect(names).not.toContain('etc/keep');

    const replay = join(d, 'replay');
    execFileSync('cp', ['-a', lower, replay]);
    await applyLayer(diffDirectories(lower, upper, { upperKind: 'overlay' }), replay);
    expect((await treeDigest(replay)).entries).toEqual((await mergedDigest(overlay)).entries);
  });
});

describe('writeDiff', () => {
  const cases: Array<
    [string, (o: Awaited<ReturnType<typeof overlayWithChanges>>) => { lower: Mount[]; upper: Mount[] }]
  > = [
    // the fast path: upper is an overlay over exactly the lower
    [
      'overlay upper over the lower',
      (o) => ({ lower: [{ type: 'bind', source: o.lower, options: ['rbind', 'ro'] }], upper: o.overlay }),
    ],
    // the general path: both mounted read-only and walked
    [
      'two mounted trees',
      (o) => ({
        lower: [{ type: 'bind', source: o.lower, options: ['rbind', 'ro'] }],
        upper: [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${o.upper}:${o.lower}`] }],
      }),
    ],
  ];
  it.each(cases)('commits a gzip layer with its uncompressed label (%s)', async (_name, pick) => {
    const o = await overlayWithChanges();
    const { lower, upper } = pick(o);
    const content = new MemoryContent();
    const desc = await writeDiff(ctx, lower, upper, content, { labels: { mine: 'yes' } });
    expect(desc.mediaType).toBe(MediaTypes.ociLayerGzip);
    const blob = content.blobs.get(desc.digest)!;
    expect(blob.data.length).toBe(desc.size);
    const tar = gunzipSync(blob.data);
    expect(blob.labels).toEqual({ mine: 'yes', [UNCOMPRESSED_LABEL]: sha(tar) });

    const replay = join(o.d, 'replay');
    execFileSync('cp', ['-a', o.lower, replay]);
    const applied = await applyLayer(Readable.from([blob.data]), replay);
    expect(applied.digest).toBe(sha(tar));
    expect((await treeDigest(replay)).entries).toEqual((await mergedDigest(o.overlay)).entries);
    expect(await readFile(join(replay, 'var/lib/fresh'), 'utf8')).toBe('fresh');
  });

  it('a layer already in the store gets the label it lacks; zstd and plain tar too', async () => {
    const o = await overlayWithChanges();
    const content = new MemoryContent();
    const lower: Mount[] = [{ type: 'bind', source: o.lower, options: ['rbind', 'ro'] }];
    const plain = await writeDiff(ctx, lower, o.overlay, content, { mediaType: MediaTypes.ociLayer });
    delete content.blobs.get(plain.digest)!.labels[UNCOMPRESSED_LABEL];
    const again = await writeDiff(ctx, lower, o.overlay, content, { mediaType: MediaTypes.ociLayer });
    expect(again.digest).toBe(plain.digest);
    expect(content.blobs.get(plain.digest)!.labels[UNCOMPRESSED_LABEL]).toBe(plain.digest);

    const zst = await writeDiff(ctx, lower, o.overlay, content, { mediaType: MediaTypes.ociLayerZstd });
    const tar = execFileSync('zstd', ['-d', '-c', '-q'], { input: content.blobs.get(zst.digest)!.data });
    expect(sha(tar)).toBe(content.blobs.get(zst.digest)!.labels[UNCOMPRESSED_LABEL]);
    await expect(
      writeDiff(ctx, lower, o.overlay, content, { mediaType: 'application/x-nope' }),
    ).rejects.toMatchObject({
      code: 'ERR_NOT_IMPLEMENTED',
    });
  });

  it('diffs a base layer (no lower mounts)', async () => {
    const d = await tempDir();
    const src = join(d, 'src');
    await mkdir(src);
    await apply(base, src);
    const content = new MemoryContent();
    const desc = await writeDiff(ctx, [], [{ type: 'bind', source: src, options: ['rbind'] }], content);
    const dst = join(d, 'dst');
    await mkdir(dst);
    await applyLayer(Readable.from([content.blobs.get(desc.digest)!.data]), dst);
    expect((await treeDigest(dst)).digest).toBe((await treeDigest(src)).digest);
  });
});

describe('a diff of an unchanged tree', () => {
  /** Reads every file below root (through an overlay this moves atimes, nothing else). */
  async function readAll(root: string) {
    for await (const e of walkTree(root)) if (e.st.isFile()) await readFile(e.abs);
  }

  /** Moves the atime (and so the ctime) of everything below root, leaving mtimes to the nanosecond. */
  async function touchAtimes(root: string) {
    const all: Array<[string, bigint]> = [];
    for await (const e of walkTree(root)) all.push([e.abs, e.st.mtimeNs]);
    execFileSync('touch', ['-a', '-h', '-d', '@1234567890', ...all.map(([p]) => p)]);
    for (const [p, mtime] of all) {
      const st = await lstat(p, { bigint: true });
      expect([st.atimeNs, st.mtimeNs]).toEqual([1234567890n * 1_000_000_000n, mtime]);
    }
  }

  /** Waits until the wall clock has passed the next whole second. */
  const nextSecond = () => sleep(1050 - (Date.now() % 1000));

  const paths: Array<[string, (o: Awaited<ReturnType<typeof overlayWithChanges>>) => Mount[]]> = [
    ['overlay upper over the lower', (o) => o.overlay],
    [
      'two mounted trees',
      (o) => [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${o.upper}:${o.lower}`] }],
    ],
  ];
  it.each(paths)(
    'is byte-identical every time, after reads and across seconds (%s)',
    async (_name, pick) => {
      const o = await overlayWithChanges();
      const lower: Mount[] = [{ type: 'bind', source: o.lower, options: ['rbind', 'ro'] }];
      const upper = pick(o);
      const digests = new Set<string>();
      const diffIDs = new Set<string>();
      const diff = async (mediaType: string) => {
        const content = new MemoryContent();
        const desc = await writeDiff(ctx, lower, upper, content, { mediaType });
        digests.add(desc.digest);
        diffIDs.add(content.blobs.get(desc.digest)!.labels[UNCOMPRESSED_LABEL]!);
        return content.blobs.get(desc.digest)!.data;
      };
      const first = await diff(MediaTypes.ociLayer);
      // the layer has what could leak a clock: a deletion, an opaque directory, an xattr
      const names: string[] = [];
      for await (const e of readTar(Readable.from([first]))) names.push(e.header.name);
      expect(names).toEqual(expect.arrayContaining(['etc/.wh.rm', 'bin/tool']));
      for (let i = 0; i < 3; i++) await diff(MediaTypes.ociLayer);
      await withTempMount(o.overlay, readAll);
      await touchAtimes(o.lower);
      await touchAtimes(o.upper);
      await nextSecond();
      await diff(MediaTypes.ociLayer);
      await nextSecond();
      await diff(MediaTypes.ociLayer);
      expect(digests.size).toBe(1);
      // compressed twice across a second boundary: the same gzip blob, the same diffID
      await diff(MediaTypes.ociLayerGzip);
      await nextSecond();
      await diff(MediaTypes.ociLayerGzip);
      expect(digests.size).toBe(2);
      expect(diffIDs.size).toBe(1);
    },
    30_000,
  );

  it('of a base layer is byte-identical every time', async () => {
    const d = await tempDir();
    const src = join(d, 'src');
    await mkdir(src);
    await apply(base, src);
    const upper: Mount[] = [{ type: 'bind', source: src, options: ['rbind'] }];
    const digests = new Set<string>();
    for (let i = 0; i < 3; i++) {
      digests.add((await writeDiff(ctx, [], upper, new MemoryContent())).digest);
      await readAll(src);
      await touchAtimes(src);
      await nextSecond();
    }
    expect(digests.size).toBe(1);
  }, 30_000);
});
