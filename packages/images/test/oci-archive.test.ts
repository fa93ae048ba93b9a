import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ContentStore, Context } from '@berth/api';
import { openLocalStore } from '@berth/content';
import { buildTar, exportArchive, type Image, importArchive, readTar } from '@berth/images';
import { buildImage, buildIndex, dir, file, sha256, storeImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
let work: string;
let a: ContentStore;
let b: ContentStore;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'berth-archive-'));
  a = await openLocalStore(join(work, 'a'));
  b = await openLocalStore(join(work, 'b'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

async function entries(tar: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for await (const e of readTar(Readable.from([tar])))
    out.set(e.header.name, e.header.type === 'file' ? await e.readAll() : Buffer.alloc(0));
  return out;
}

async function digests(store: ContentStore): Promise<string[]> {
  const out: string[] = [];
  await store.walk(ctx, (i) => {
    out.push(i.digest);
  });
  return out.sort();
}

describe('export', () => {
  it('writes an OCI layout with containerd annotations and a Docker manifest.json', async () => {
    const img = buildImage({ layers: [[file('x', 'one')], [file('y', 'two')]] });
    await storeImage(ctx, a, img.blobs);
    const tar = await collect(
      exportArchive(ctx, [{ name: 'docker.io/library/app:v1', target: img.manifest }], { content: a }),
    );
    const files = await entries(tar);
    expect([...files.keys()]).toEqual([
      'blobs/',
      'blobs/sha256/',
      ...[...img.blobs.keys()].map((d) => `blobs/sha256/${d.slice(7)}`).sort(),
      'index.json',
      'manifest.json',
      'oci-layout',
      'repositories',
    ]);
    expect(JSON.parse(files.get('oci-layout')!.toString())).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(JSON.parse(files.get('index.json')!.toString())).toEqual({
      schemaVersion: 2,
      manifests: [
        {
          ...img.manifest,
          annotations: {
            'io.containerd.image.name': 'docker.io/library/app:v1',
            'org.opencontainers.image.ref.name': 'v1',
          },
        },
      ],
    });
    expect(JSON.parse(files.get('manifest.json')!.toString())).toEqual([
      {
        Config: `blobs/sha256/${img.config.digest.slice(7)}`,
        RepoTags: ['app:v1'],
        Layers: img.layers.map((l) => `blobs/sha256/${l.desc.digest.slice(7)}`),
      },
    ]);
    expect(JSON.parse(files.get('repositories')!.toString())).toEqual({
      app: { v1: img.layers[1]!.desc.digest.slice(7) },
    });
    for (const [d, data] of img.blobs)
      expect(files.get(`blobs/sha256/${d.slice(7)}`)!.equals(data)).toBe(true);
  });

  it('exports one platform of an index by default, every one when asked', async () => {
    const amd = buildImage({ layers: [[file('a', 'amd')]] });
    const arm = buildImage({
      layers: [[file('a', 'arm')]],
      platform: { os: 'linux', architecture: 'arm64' },
    });
    const idx = buildIndex(
      [amd, arm],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    await storeImage(ctx, a, idx.blobs);
    const one = await entries(
      await collect(
        exportArchive(ctx, [{ name: 'x.io/m:1', target: idx.index }], {
          content: a,
          platform: 'linux/amd64',
        }),
      ),
    );
    expect(one.has(`blobs/sha256/${amd.layers[0]!.desc.digest.slice(7)}`)).toBe(true);
    expect(one.has(`blobs/sha256/${arm.layers[0]!.desc.digest.slice(7)}`)).toBe(false);
    expect(JSON.parse(one.get('manifest.json')!.toString())[0].Config).toBe(
      `blobs/sha256/${amd.config.digest.slice(7)}`,
    );
    const every = await entries(
      await collect(
        exportArchive(ctx, [{ name: 'x.io/m:1', target: idx.index }], { content: a, platform: 'all' }),
      ),
    );
    expect(every.has(`blobs/sha256/${arm.layers[0]!.desc.digest.slice(7)}`)).toBe(true);
  });

  it('fails naming a blob missing from the store', async () => {
    const img = buildImage({ layers: [[file('x', 'one')]] });
    await storeImage(ctx, a, new Map([...img.blobs].filter(([d]) => d !== img.layers[0]!.desc.digest)));
    await expect(
      collect(exportArchive(ctx, [{ name: 'a.io/x:1', target: img.manifest }], { content: a })),
    ).rejects.toThrow(`${img.layers[0]!.desc.digest}: not in the content store`);
    await expect(collect(exportArchive(ctx, [], { content: a }))).rejects.toThrow(/nothing to export/);
  });
});

describe('import', () => {
  it('round-trips an export: same blobs, same images, gc labels set', async () => {
    const img = buildImage({ layers: [[file('x', 'one')], [file('y', 'two')]] });
    await storeImage(ctx, a, img.blobs);
    const tar = await collect(
      exportArchive(
        ctx,
        [
          { name: 'docker.io/library/app:v1', target: img.manifest },
          { name: 'q.io/other:2', target: img.manifest },
        ],
        {
          content: a,
        },
      ),
    );
    const saved: Image[] = [];
    const res = await importArchive(ctx, Readable.from([tar]), {
      content: b,
      saveImage: async (_c, i) => {
        saved.push(i);
      },
    });
    expect(res.images.map((i) => [i.name, i.target.digest])).toEqual([
      ['docker.io/library/app:v1', img.manifest.digest],
      ['q.io/other:2', img.manifest.digest],
    ]);
    expect(saved).toEqual(res.images);
    expect(await digests(b)).toEqual([...img.blobs.keys(), res.index.digest].sort());
    expect((await b.info(ctx, img.manifest.digest)).labels['containerd.io/gc.ref.content.l.1']).toBe(
      img.layers[1]!.desc.digest,
    );
    expect((await b.info(ctx, res.index.digest)).labels).toEqual({
      'containerd.io/gc.ref.content.m.0': img.manifest.digest,
      'containerd.io/gc.ref.content.m.1': img.manifest.digest,
    });
  });

  it('imports a legacy docker save archive (<id>/layer.tar, symlinked layers, <hex>.json config)', async () => {
    const l1 = buildTar([dir('etc/'), file('etc/os', 'legacy\n')]);
    const l2 = buildTar([file('top', 'x')]);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha256(l1), sha256(l2), sha256(l1)] },
      }),
    );
    const cfgName = `${sha256(config).slice(7)}.json`;
    const manifest = [
      {
        Config: cfgName,
        RepoTags: ['legacy:1', 'reg.io/team/legacy:2'],
        Layers: ['aaa/layer.tar', 'bbb/layer.tar', 'ccc/layer.tar'],
      },
    ];
    const T = (name: string, data: Buffer | string) => ({ name, type: 'file' as const, mode: 0o644, data });
    const tar = buildTar([
      { name: 'aaa/', type: 'dir', mode: 0o755 },
      T('aaa/layer.tar', l1),
      T('aaa/VERSION', '1.0'),
      { name: 'bbb/', type: 'dir', mode: 0o755 },
      T('bbb/layer.tar', l2),
      { name: 'ccc/', type: 'dir', mode: 0o755 },
      { name: 'ccc/layer.tar', type: 'symlink', mode: 0o777, linkname: '../aaa/layer.tar' },
      T(cfgName, config),
      T('manifest.json', JSON.stringify(manifest)),
      T('repositories', JSON.stringify({ legacy: { 1: 'bbb' } })),
    ]);
    const res = await importArchive(ctx, Readable.from([tar]), { content: b });
    expect(res.images.map((i) => i.name)).toEqual(['docker.io/library/legacy:1', 'reg.io/team/legacy:2']);
    const target = res.images[0]!.target;
    expect(target.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(target.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    const m = JSON.parse(
      (
        await b.readerAt(ctx, target).then(async (r) => {
          const d = await r.readAt(0, r.size);
          await r.close();
          return d;
        })
      ).toString(),
    );
    expect(m.config).toEqual({
      mediaType: 'application/vnd.docker.container.image.v1+json',
      digest: sha256(config),
      size: config.length,
    });
    expect(m.layers.map((l: any) => [l.mediaType, l.digest])).toEqual([
      ['application/vnd.docker.image.rootfs.diff.tar', sha256(l1)],
      ['application/vnd.docker.image.rootfs.diff.tar', sha256(l2)],
      ['application/vnd.docker.image.rootfs.diff.tar', sha256(l1)],
    ]);
  });

  it('names bare OCI tags with the base name, and skips unnamed manifests otherwise', async () => {
    const img = buildImage({ layers: [[file('x', 'one')]] });
    const idx = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...img.manifest, annotations: { 'org.opencontainers.image.ref.name': '3.1' } }],
      }),
    );
    const T = (name: string, data: Buffer | string) => ({ name, type: 'file' as const, mode: 0o644, data });
    const tar = buildTar([
      T('oci-layout', '{"imageLayoutVersion":"1.0.0"}'),
      T('index.json', idx),
      ...[...img.blobs].map(([d, data]) => T(`blobs/sha256/${d.slice(7)}`, data)),
    ]);
    expect((await importArchive(ctx, Readable.from([tar]), { content: b })).images).toEqual([]);
    const named = await importArchive(ctx, Readable.from([tar]), {
      content: b,
      baseName: 'reg.io/base',
      indexName: 'reg.io/all:idx',
    });
    expect(named.images.map((i) => i.name)).toEqual(['reg.io/all:idx', 'reg.io/base:3.1']);
  });

  it('refuses tampered, incomplete and unknown archives without committing bad blobs', async () => {
    const img = buildImage({ layers: [[file('x', 'one')]] });
    await storeImage(ctx, a, img.blobs);
    const good = await entries(
      await collect(exportArchive(ctx, [{ name: 'a.io/x:1', target: img.manifest }], { content: a })),
    );
    const T = (name: string, data: Buffer | string) => ({ name, type: 'file' as const, mode: 0o644, data });
    const layerPath = `blobs/sha256/${img.layers[0]!.desc.digest.slice(7)}`;

    const tampered = buildTar(
      [...good]
        .filter(([n]) => !n.endsWith('/'))
        .map(([n, d]) => T(n, n === layerPath ? Buffer.from(d).fill(7, 0, 4) : d)),
    );
    await expect(importArchive(ctx, Readable.from([tampered]), { content: b })).rejects.toThrow(
      new RegExp(
        `archive entry ${layerPath}: content has digest sha256:[0-9a-f]+, its name says ${img.layers[0]!.desc.digest}`,
      ),
    );
    await expect(b.info(ctx, img.layers[0]!.desc.digest)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });

    const missing = buildTar(
      [...good].filter(([n]) => !n.endsWith('/') && n !== layerPath).map(([n, d]) => T(n, d)),
    );
    await expect(importArchive(ctx, Readable.from([missing]), { content: b })).rejects.toThrow(
      `archive is missing application/vnd.oci.image.layer.v1.tar+gzip ${img.layers[0]!.desc.digest}`,
    );

    await expect(
      importArchive(ctx, Readable.from([buildTar([T('hello', 'x')])]), { content: b }),
    ).rejects.toThrow(/unrecognized image archive format/);
    await expect(
      importArchive(
        ctx,
        Readable.from([
          buildTar([T('oci-layout', '{"imageLayoutVersion":"9"}'), T('index.json', '{"manifests":[]}')]),
        ]),
        { content: b },
      ),
    ).rejects.toThrow(/unsupported OCI layout version "9"/);
    await expect(
      importArchive(ctx, Readable.from([buildTar([T('manifest.json', '[{')])]), { content: b }),
    ).rejects.toThrow(/archive manifest.json: invalid JSON/);
  });
});
