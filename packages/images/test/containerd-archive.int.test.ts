import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ContentStore, Context } from '@berth/api';
import { openLocalStore } from '@berth/content';
import {
  buildTar,
  chainIds,
  exportImages,
  importArchive,
  pull,
  RegistryClient,
  readTar,
} from '@berth/images';
import {
  containerdInstalled,
  ctr,
  type Daemon,
  type Registry,
  startContainerd,
  startRegistry,
} from '@berth/testkit';
import { type BuiltImage, buildImage, busyboxLayer, file, pushImage, storeImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
const run = containerdInstalled() ? describe : describe.skip;

run('archives interchange with containerd', () => {
  let containerd: Daemon;
  let registry: Registry;
  let work: string;
  let content: ContentStore;
  let img: BuiltImage;
  const NAME = 'docker.io/library/berth-archive:v1';

  const C = async (...args: string[]) => {
    const r = await ctr(containerd.address, ['-n', 'default', ...args]);
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };

  beforeAll(async () => {
    containerd = await startContainerd();
    registry = await startRegistry();
    img = buildImage({ layers: [busyboxLayer(), [file('etc/berth', 'made by berth\n')]], cmd: ['/bin/sh'] });
  });
  afterAll(async () => {
    await containerd?.dispose();
    await registry?.stop();
  });
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'berth-ctr-archive-'));
    content = await openLocalStore(join(work, 'content'));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('our export imports into containerd, unpacked under the same chain IDs', async () => {
    await storeImage(ctx, content, img.blobs);
    const tar = join(work, 'ours.tar');
    await exportImages(ctx, [{ name: NAME, target: img.manifest }], createWriteStream(tar), { content });
    await C('images', 'import', tar);
    expect((await C('images', 'ls', '-q')).split('\n')).toContain(NAME);
    expect(await C('images', 'check')).toMatch(
      new RegExp(
        `${NAME}\\s+application/vnd.oci.image.manifest.v1\\+json\\s+${img.manifest.digest}\\s+complete`,
      ),
    );
    const snapshots = await C('snapshots', 'ls');
    for (const id of chainIds(img.layers.map((l) => l.diffId))) expect(snapshots).toContain(id);
  });

  it("containerd's export imports here, with the same image and blobs", async () => {
    await storeImage(ctx, content, img.blobs);
    const ours = join(work, 'ours.tar');
    await exportImages(ctx, [{ name: NAME, target: img.manifest }], createWriteStream(ours), { content });
    await C('images', 'import', ours);
    const theirs = join(work, 'theirs.tar');
    await C('images', 'export', theirs, NAME);

    const other = await openLocalStore(join(work, 'other'));
    const res = await importArchive(ctx, createReadStream(theirs), { content: other });
    expect(res.images.map((i) => [i.name, i.target.digest])).toEqual([[NAME, img.manifest.digest]]);
    for (const [d, data] of img.blobs) {
      const r = await other.readerAt(ctx, { digest: d });
      expect((await r.readAt(0, r.size)).equals(data)).toBe(true);
      await r.close();
    }
  });

  it('an image containerd pulled from a registry and exported imports here', async () => {
    const small = buildImage({ layers: [[file('hello', 'from the registry\n')]], format: 'docker' });
    await pushImage(registry.url, 'ctr/pulled', 'v1', small);
    const ref = `${registry.host}/ctr/pulled:v1`;
    await C('images', 'pull', '--plain-http', ref);
    const theirs = join(work, 'pulled.tar');
    await C('images', 'export', theirs, ref);
    const res = await importArchive(ctx, createReadStream(theirs), { content });
    expect(res.images.map((i) => [i.name, i.target.digest])).toEqual([[ref, small.manifest.digest]]);
    // And what we pull from the same registry is the same image.
    const other = await openLocalStore(join(work, 'other'));
    const pulled = await pull(ctx, ref, { content: other, client: new RegistryClient() });
    expect(res.images[0]!.target).toMatchObject(pulled.image.target);
  });

  it('a docker save archive (manifest.json only) imports into containerd', async () => {
    await storeImage(ctx, content, img.blobs);
    const full = join(work, 'full.tar');
    await exportImages(
      ctx,
      [{ name: 'docker.io/library/berth-docker:v2', target: img.manifest }],
      createWriteStream(full),
      { content },
    );
    // Keep what `docker save` writes: manifest.json, repositories and the blobs, no OCI layout.
    const kept: Parameters<typeof buildTar>[0] = [];
    for await (const e of readTar(Readable.from([await readFile(full)]))) {
      if (e.header.name === 'oci-layout' || e.header.name === 'index.json') continue;
      kept.push(
        e.header.type === 'dir'
          ? { name: e.header.name, type: 'dir', mode: 0o755 }
          : { name: e.header.name, type: 'file', mode: 0o644, data: await e.readAll() },
      );
    }
    const dockerOnly = join(work, 'docker.tar');
    await writeFile(dockerOnly, buildTar(kept));
    await C('images', 'import', dockerOnly);
    expect(await C('images', 'ls', '-q')).toContain('docker.io/library/berth-docker:v2');
    // Ours reads it too, building the same Docker schema 2 manifest containerd builds.
    const res = await importArchive(ctx, createReadStream(dockerOnly), {
      content: await openLocalStore(join(work, 'd')),
    });
    const theirs = (await C('images', 'ls'))
      .split('\n')
      .find((l) => l.startsWith('docker.io/library/berth-docker:v2'))!;
    expect(theirs).toContain(res.images[0]!.target.digest);
  });
});
