/**
 * Layers applied side by side (staged into parentless snapshots, moved into place once the
 * parent is committed) must give exactly the snapshots a one-layer-at-a-time unpack gives:
 * every upper directory and the merged tree compared with treeDigest (types, modes,
 * owners, xattrs, whiteout devices, opaque markers, links, contents). Also the apply
 * workers: same results as in-thread, typed errors across the thread boundary. Needs root.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentStore, Context, Snapshotter } from '@berth/api';
import { openLocalStore } from '@berth/content';
import {
  ApplyPool,
  applyLayer,
  type BlobProgress,
  chainIds,
  mountApplier,
  pull,
  RegistryClient,
  type TarInput,
  treeDigest,
} from '@berth/images';
import { openOverlaySnapshotter } from '@berth/snapshotter';
import { withTempMount } from '@berth/sys';
import { type Registry, startRegistry } from '@berth/testkit';
import { type BuiltImage, buildImage, dir, file, noise, pushImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
const T = 1_600_000_000;
const e = (x: TarInput): TarInput => ({ uid: 0, gid: 0, mtime: T, ...x });

let registry: Registry;
let img: BuiltImage;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  img = buildImage({
    layers: [
      [
        e({ name: 'etc/', type: 'dir', mode: 0o750, uid: 7, gid: 8 }),
        e({ name: 'etc/passwd', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:0\n') }),
        e({
          name: 'opt/',
          type: 'dir',
          mode: 0o700,
          uid: 33,
          gid: 33,
          xattrs: { 'user.tag': Buffer.from('lower') },
        }),
        e({ name: 'opt/old/', type: 'dir', mode: 0o755 }),
        e({ name: 'opt/old/a', type: 'file', mode: 0o600, data: Buffer.from('a') }),
        e({ name: 'var/', type: 'dir', mode: 0o1777 }),
        e({ name: 'var/gone', type: 'file', mode: 0o644, data: Buffer.from('bye') }),
        file('usr/big', noise(500_000)),
      ],
      [
        // A file under a parent this layer does not name: the parent takes etc/'s attributes.
        e({ name: 'etc/motd', type: 'file', mode: 0o644, data: Buffer.from('hi\n') }),
        e({ name: 'var/.wh.gone', type: 'file', mode: 0o644 }),
        e({ name: 'opt/old/.wh..wh..opq', type: 'file', mode: 0o644 }),
        e({ name: 'opt/old/b', type: 'file', mode: 0o640, data: Buffer.from('b') }),
        e({ name: 'bin/tool', type: 'file', mode: 0o4755, data: Buffer.from('#!/bin/sh\n') }),
        e({ name: 'bin/hard', type: 'link', mode: 0o755, linkname: 'bin/tool' }),
        e({ name: 'bin/sym', type: 'symlink', mode: 0o777, linkname: 'tool' }),
      ],
      [
        // Implicit parents again, deeper, and a file replacing a directory.
        e({ name: 'opt/new/deep/file', type: 'file', mode: 0o644, data: noise(200_000) }),
        e({ name: 'etc/passwd', type: 'file', mode: 0o600, data: Buffer.from('root:x:0:0:new\n') }),
        dir('srv/'),
        file('srv/data', noise(300_000)),
      ],
      [file('top.txt', 'top\n')],
    ],
  });
  await pushImage(registry.url, 'staged/app', 'v1', img);
});

afterAll(async () => {
  await registry?.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'berth-staged-'));
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function unpackWith(name: string, stage: boolean, pool?: ApplyPool) {
  const content: ContentStore = await openLocalStore(join(work, name, 'content'));
  const sn: Snapshotter = await openOverlaySnapshotter(join(work, name, 'overlay'));
  const prepared: string[] = [];
  const prepare = sn.prepare.bind(sn);
  sn.prepare = (c, key, parent, o) => {
    prepared.push(key);
    return prepare(c, key, parent, o);
  };
  const events: BlobProgress[] = [];
  await pull(ctx, `${registry.host}/staged/app:v1`, {
    content,
    snapshotter: sn,
    client: new RegistryClient({ retryDelayMs: 10 }),
    applier: mountApplier(content, { pool }),
    stageLayers: stage,
    onProgress: (ev) => {
      if (ev.type === 'blob') events.push(ev);
    },
  });
  const chain = chainIds(img.layers.map((l) => l.diffId));
  const uppers: string[] = [];
  let etc: { mode: number; uid: number } | undefined;
  for (const [i, c] of chain.entries()) {
    const mounts = await sn.view(ctx, `look-${i}`, c);
    // A view of chain[i] has chain[i] as its uppermost lower: compare that directory.
    const m = mounts[0]!;
    const lower =
      m.type === 'bind'
        ? m.source
        : m.options
            .find((o) => o.startsWith('lowerdir='))!
            .slice('lowerdir='.length)
            .split(':')[0]!;
    uppers.push((await treeDigest(lower)).digest);
    if (i === 1) {
      const st = statSync(join(lower, 'etc'));
      etc = { mode: st.mode & 0o7777, uid: st.uid };
    }
  }
  const merged = await withTempMount(await sn.view(ctx, 'merged', chain.at(-1)!), (root) => treeDigest(root));
  const snapshots: string[] = [];
  await sn.walk(ctx, (info) => {
    snapshots.push(info.name);
  });
  await sn.close?.();
  return {
    uppers,
    etc,
    staged: prepared.filter((k) => k.startsWith('stage-')).length,
    merged: merged.digest,
    lines: merged.lines,
    snapshots: snapshots.sort(),
  };
}

describe('staged unpack', () => {
  it('gives the snapshots a one-at-a-time unpack gives, leaving no staging snapshot behind', async () => {
    const seq = await unpackWith('sequential', false);
    const staged = await unpackWith('staged', true);
    expect(staged.uppers).toEqual(seq.uppers);
    expect(staged.lines).toEqual(seq.lines);
    expect(staged.merged).toBe(seq.merged);
    expect(staged.snapshots).toEqual(seq.snapshots);
    expect(staged.snapshots.some((s) => s.startsWith('stage-'))).toBe(false);
    // Layers 2 to 4 went through staging; layer 2's implicit etc/ took layer 1's attributes.
    expect(staged.staged).toBe(3);
    expect(seq.staged).toBe(0);
    expect(staged.etc).toEqual({ mode: 0o750, uid: 7 });
    expect(seq.etc).toEqual({ mode: 0o750, uid: 7 });
  });

  it('does the same on apply workers when they are built', async () => {
    if (!existsSync(join(__dirname, '..', 'dist', 'archive', 'apply-worker.js'))) return;
    const pool = new ApplyPool(2, join(__dirname, '..', 'dist', 'archive', 'apply-worker.js'));
    try {
      const seq = await unpackWith('sequential', false);
      const staged = await unpackWith('workers', true, pool);
      expect(staged.staged).toBe(3);
      expect(staged.uppers).toEqual(seq.uppers);
      expect(staged.merged).toBe(seq.merged);
    } finally {
      await pool.close();
    }
  });
});

describe('ApplyPool', () => {
  const worker = join(__dirname, '..', 'dist', 'archive', 'apply-worker.js');
  const built = existsSync(worker);

  (built ? it : it.skip)('applies on a worker what applyLayer applies in-thread', async () => {
    const pool = new ApplyPool(1, worker);
    try {
      const layer = img.layers[1]!;
      const a = join(work, 'a');
      const b = join(work, 'b');
      await Promise.all([rm(a, { force: true }), rm(b, { force: true })]);
      const { mkdir } = await import('node:fs/promises');
      await mkdir(a);
      await mkdir(b);
      const chunks = async function* () {
        for (let o = 0; o < layer.data.length; o += 4096) yield layer.data.subarray(o, o + 4096);
      };
      const inThread = await applyLayer(chunks(), a, { mediaType: layer.desc.mediaType });
      const onWorker = await pool.apply(chunks(), b, { mediaType: layer.desc.mediaType });
      expect(onWorker).toEqual(inThread);
      expect(onWorker.digest).toBe(layer.diffId);
      expect((await treeDigest(b)).digest).toBe((await treeDigest(a)).digest);
    } finally {
      await pool.close();
    }
  });

  (built ? it : it.skip)('brings typed errors back from the worker and stays usable', async () => {
    const pool = new ApplyPool(1, worker);
    try {
      const target = join(work, 'bad');
      const { mkdir } = await import('node:fs/promises');
      await mkdir(target);
      const bad = async function* () {
        yield Buffer.from('definitely not a tar stream, not gzip either'.repeat(20));
      };
      await expect(
        pool.apply(bad(), target, { mediaType: 'application/vnd.oci.image.layer.v1.tar' }),
      ).rejects.toMatchObject({
        code: expect.stringMatching(/^ERR_/),
      });
      await expect(pool.apply(bad(), join(work, 'missing'), {})).rejects.toMatchObject({
        code: 'ERR_FAILED_PRECONDITION',
        message: expect.stringContaining('missing'),
      });
      // A source that fails midway aborts the apply and reports the source's error.
      const failing = async function* () {
        yield img.layers[0]!.data.subarray(0, 1000);
        throw new Error('source broke');
      };
      await expect(pool.apply(failing(), target, {})).rejects.toThrow('source broke');
      const layer = img.layers[3]!;
      const ok = join(work, 'ok');
      await mkdir(ok);
      const res = await pool.apply(
        (async function* () {
          yield layer.data;
        })(),
        ok,
        {},
      );
      expect(res.digest).toBe(layer.diffId);
    } finally {
      await pool.close();
    }
  });
});
