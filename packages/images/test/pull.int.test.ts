import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentStore, Context, Snapshotter } from '@berth/api';
import { openLocalStore } from '@berth/content';
import {
  type Applier,
  chainIds,
  ImageMediaTypes,
  mountApplier,
  type PullEvent,
  pull,
  RegistryClient,
} from '@berth/images';
import { openOverlaySnapshotter } from '@berth/snapshotter';
import { withTempMount } from '@berth/sys';
import { type FaultyProxy, type Registry, startFaultyProxy, startRegistry } from '@berth/testkit';
import {
  type BuiltImage,
  buildImage,
  buildIndex,
  dir,
  file,
  noise,
  pushImage,
  pushIndex,
} from './image-fixtures';

const ctx: Context = { namespace: 'default' };
let registry: Registry;
let proxy: FaultyProxy;
let work: string;
let content: ContentStore;
let sn: Snapshotter;
let img: BuiltImage;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultyProxy(registry);
  img = buildImage({
    layers: [
      [dir('etc/'), file('etc/hostname', 'berth\n'), file('etc/big', noise(300_000))],
      [
        dir('usr/'),
        file('usr/data', noise(2_000_000)),
        { name: 'etc/.wh.hostname', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0 },
      ],
      [file('hello.txt', 'hello from the top layer\n')],
    ],
  });
  await pushImage(registry.url, 'test/app', 'v1', img);
});

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'berth-pull-'));
  content = await openLocalStore(join(work, 'content'));
  sn = await openOverlaySnapshotter(join(work, 'overlay'));
  proxy.clearFaults();
  proxy.requests.length = 0;
});

afterEach(async () => {
  await sn.close();
  await rm(work, { recursive: true, force: true });
});

const client = (opts: ConstructorParameters<typeof RegistryClient>[0] = {}) =>
  new RegistryClient({ retryDelayMs: 10, ...opts });

const ref = (repo = 'test/app:v1') => `${proxy.host}/${repo}`;

describe('pull', () => {
  it('pulls into the content store with containerd labels and unpacks under chain IDs', async () => {
    const events: PullEvent[] = [];
    const res = await pull(ctx, ref(), {
      content,
      snapshotter: sn,
      client: client(),
      labels: { team: 'a' },
      onProgress: (e) => events.push(e),
    });
    expect(res.image).toEqual({
      name: `${proxy.host}/test/app:v1`,
      target: img.manifest,
      labels: { team: 'a' },
    });
    expect(res.manifests).toEqual([img.manifest]);

    const source = 'containerd.io/distribution.source.127.0.0.1';
    const m = await content.info(ctx, img.manifest.digest);
    expect(m.labels).toEqual({
      'containerd.io/gc.ref.content.config': img.config.digest,
      'containerd.io/gc.ref.content.l.0': img.layers[0]!.desc.digest,
      'containerd.io/gc.ref.content.l.1': img.layers[1]!.desc.digest,
      'containerd.io/gc.ref.content.l.2': img.layers[2]!.desc.digest,
      [source]: 'test/app',
    });
    const chain = chainIds(img.layers.map((l) => l.diffId));
    const c = await content.info(ctx, img.config.digest);
    expect(c.labels).toEqual({ [source]: 'test/app', 'containerd.io/gc.ref.snapshot.overlayfs': chain[2] });
    for (const l of img.layers) {
      const info = await content.info(ctx, l.desc.digest);
      expect(info.size).toBe(l.desc.size);
      expect(info.labels).toEqual({ [source]: 'test/app', 'containerd.io/uncompressed': l.diffId });
    }
    for (let i = 0; i < 3; i++) {
      const s = await sn.stat(ctx, chain[i]!);
      expect(s).toMatchObject({ kind: 'committed', parent: i ? chain[i - 1] : '' });
      expect(s.labels['containerd.io/snapshot.ref']).toBe(chain[i]);
    }
    expect(res.unpacked).toEqual([
      { manifest: img.manifest.digest, chainId: chain[2], snapshotter: 'overlayfs' },
    ]);
    // The top snapshot shows the union, with the whiteout applied.
    const mounts = await sn.view(ctx, 'look', chain[2]!);
    await withTempMount(mounts, async (root) => {
      expect(await readFile(join(root, 'hello.txt'), 'utf8')).toBe('hello from the top layer\n');
      expect((await readFile(join(root, 'usr/data'))).length).toBe(2_000_000);
      await expect(readFile(join(root, 'etc/hostname'))).rejects.toMatchObject({ code: 'ENOENT' });
    });
    await sn.remove(ctx, 'look');

    // Progress: per-blob bytes up to the size, then done; unpack events in layer order.
    const big = img.layers[1]!.desc;
    const bytes = events
      .filter((e) => e.type === 'blob' && e.digest === big.digest)
      .map((e) => (e as any).offset);
    expect(bytes[bytes.length - 1]).toBe(big.size);
    expect(bytes).toEqual([...bytes].sort((a, b) => a - b));
    expect(events.some((e) => e.type === 'blob' && e.digest === big.digest && e.status === 'done')).toBe(
      true,
    );
    const unpackDone = events
      .filter((e) => e.type === 'unpack' && e.status === 'done')
      .map((e) => (e as any).chainId);
    expect(unpackDone).toEqual(chain);
  });

  it('pulls again without downloading or applying anything', async () => {
    await pull(ctx, ref(), { content, snapshotter: sn, client: client() });
    proxy.requests.length = 0;
    const applier: Applier = { apply: jest.fn() };
    await pull(ctx, ref(), { content, snapshotter: sn, client: client(), applier });
    expect(applier.apply).not.toHaveBeenCalled();
    expect(proxy.requests.filter((r) => r.path.includes('/blobs/'))).toEqual([]);
  });

  it('fetches without unpacking when asked, and by digest', async () => {
    const res = await pull(ctx, `${proxy.host}/test/app@${img.manifest.digest}`, {
      content,
      client: client(),
    });
    expect(res.image.name).toBe(`${proxy.host}/test/app@${img.manifest.digest}`);
    for (const d of img.blobs.keys()) expect((await content.info(ctx, d)).digest).toBe(d);
    expect(res.unpacked).toEqual([]);
    const walked: string[] = [];
    await sn.walk(ctx, (i) => {
      walked.push(i.name);
    });
    expect(walked).toEqual([]);
  });

  it('takes the linux/amd64 image of a multi-platform index, or the one asked for', async () => {
    const amd = buildImage({ layers: [[file('arch', 'amd64\n')]] });
    const arm = buildImage({
      layers: [[file('arch', 'arm64\n')]],
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    const idx = buildIndex(
      [arm, amd],
      [
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
        { os: 'linux', architecture: 'amd64' },
      ],
    );
    await pushIndex(registry.url, 'test/multi', 'latest', idx);

    const res = await pull(ctx, ref('test/multi'), {
      content,
      client: client(),
      platform: 'linux/amd64',
      snapshotter: sn,
    });
    expect(res.image.target).toEqual(idx.index);
    expect(res.manifests).toEqual([{ ...amd.manifest, platform: { os: 'linux', architecture: 'amd64' } }]);
    expect((await content.info(ctx, idx.index.digest)).labels['containerd.io/gc.ref.content.m.0']).toBe(
      amd.manifest.digest,
    );
    await expect(content.info(ctx, arm.manifest.digest)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });

    const res2 = await pull(ctx, ref('test/multi'), {
      content,
      client: client(),
      platform: 'linux/aarch64',
      unpack: false,
    });
    expect(res2.manifests.map((m) => m.digest)).toEqual([arm.manifest.digest]);

    await expect(
      pull(ctx, ref('test/multi'), { content, client: client(), platform: 'linux/s390x' }),
    ).rejects.toThrow(/no manifest for platform linux\/s390x/);
    const all = await pull(ctx, ref('test/multi'), { content, client: client(), platform: 'all' });
    expect(all.manifests.map((m) => m.digest).sort()).toEqual(
      [amd.manifest.digest, arm.manifest.digest].sort(),
    );
    const labels = (await content.info(ctx, idx.index.digest)).labels;
    expect([labels['containerd.io/gc.ref.content.m.0'], labels['containerd.io/gc.ref.content.m.1']]).toEqual([
      arm.manifest.digest,
      amd.manifest.digest,
    ]);
  });

  it('pulls Docker schema 2 images', async () => {
    const d = buildImage({ layers: [[file('docker', 'yes\n')]], format: 'docker' });
    await pushImage(registry.url, 'test/docker', 'v2', d);
    const res = await pull(ctx, ref('test/docker:v2'), { content, client: client(), snapshotter: sn });
    expect(res.image.target.mediaType).toBe(ImageMediaTypes.dockerManifest);
    expect(res.unpacked).toHaveLength(1);
  });

  it('runs under a lease of its own, saves the image while it holds, then releases it', async () => {
    const calls: string[] = [];
    let created: { id: string; labels: Record<string, string> } | undefined;
    const leases = {
      create: async (_c: Context, o: { id?: string; labels?: Record<string, string> }) => {
        created = { id: o.id!, labels: o.labels ?? {} };
        calls.push('create');
        return { id: o.id!, createdAt: new Date(), labels: o.labels ?? {} };
      },
      delete: async (_c: Context, id: string) => {
        calls.push(`delete ${id === created?.id}`);
      },
      list: async () => [],
      addResource: async () => {
        calls.push('add');
      },
      deleteResource: async () => {},
      listResources: async () => [],
    };
    const res = await pull(ctx, ref(), {
      content,
      client: client(),
      leases,
      saveImage: async (c, image) => {
        calls.push(`save ${c.lease === created?.id} ${image.name}`);
      },
    });
    expect(calls).toEqual(['create', `save true ${res.image.name}`, 'delete true']);
    expect(Date.parse(created!.labels['containerd.io/gc.expire']!)).toBeGreaterThan(Date.now());
    // A caller's own lease is used as it is.
    calls.length = 0;
    await pull({ ...ctx, lease: 'mine' }, ref(), { content, client: client(), leases });
    expect(calls).toEqual([]);
  });

  it('names what is missing', async () => {
    await expect(pull(ctx, ref('test/nope:v1'), { content, client: client() })).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
    await expect(pull(ctx, ref('test/app:nope'), { content, client: client() })).rejects.toThrow(
      /test\/app:nope/,
    );
    await expect(pull(ctx, 'Bad/Ref', { content, client: client() })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  it('ten concurrent pulls download each blob once and unpack each layer once', async () => {
    let prepares = 0;
    const counting: Snapshotter = Object.create(sn);
    counting.prepare = (...args) => {
      prepares++;
      return sn.prepare(...args);
    };
    const base = mountApplier(content);
    let applies = 0;
    const applier: Applier = {
      apply: (...args) => {
        applies++;
        return base.apply(...args);
      },
    };
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        pull(ctx, ref(), { content, snapshotter: counting, applier, client: client() }),
      ),
    );
    expect(new Set(results.map((r) => r.image.target.digest))).toEqual(new Set([img.manifest.digest]));
    for (const digest of img.blobs.keys()) {
      if (digest === img.manifest.digest) continue;
      const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`));
      expect([digest, gets.length]).toEqual([digest, 1]);
    }
    expect(applies).toBe(3);
    expect(prepares).toBe(3);
  });

  it('starts unpacking the first layers while a later one is still downloading', async () => {
    const last = img.layers[2]!.desc.digest;
    // The last layer stalls once; it can only finish after the stall times out and resumes.
    proxy.addFault({ method: 'GET', path: `/blobs/${last}`, fault: { kind: 'stall', bytes: 10 }, times: 1 });
    const events: string[] = [];
    await pull(ctx, ref(), {
      content,
      snapshotter: sn,
      client: client({ progressTimeoutMs: 1500 }),
      onProgress: (e) => {
        if (e.type === 'unpack' && e.status === 'done') events.push(`unpacked ${e.layer}`);
        if (e.type === 'blob' && e.status === 'done') events.push(`fetched ${e.digest}`);
        if (e.type === 'blob' && e.status === 'resumed') events.push(`resumed ${e.digest}`);
      },
    });
    const unpacked0 = events.indexOf(`unpacked ${img.layers[0]!.desc.digest}`);
    const unpacked1 = events.indexOf(`unpacked ${img.layers[1]!.desc.digest}`);
    const fetchedLast = events.indexOf(`fetched ${last}`);
    expect(unpacked0).toBeGreaterThanOrEqual(0);
    expect(unpacked1).toBeGreaterThan(unpacked0);
    expect(fetchedLast).toBeGreaterThan(unpacked1);
    // The retry asked only for the bytes after the stall.
    expect(proxy.requests.filter((r) => r.path.endsWith(last)).map((r) => r.range)).toEqual([
      undefined,
      'bytes=10-',
    ]);
  });
});
