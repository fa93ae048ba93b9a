import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentStore, Context } from '@berth/api';
import { openLocalStore } from '@berth/content';
import { mountCandidate, type PushEvent, pull, push, RegistryClient, staticCredentials } from '@berth/images';
import { type FaultyProxy, type Registry, startFaultyProxy, startRegistry } from '@berth/testkit';
import { buildImage, buildIndex, file, noise, sha256, storeImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
let registry: Registry;
let proxy: FaultyProxy;
let work: string;
let content: ContentStore;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultyProxy(registry);
});
afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
});
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'berth-push-'));
  content = await openLocalStore(join(work, 'content'));
  proxy.requests.length = 0;
  proxy.clearFaults();
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const client = () => new RegistryClient({ retryDelayMs: 5 });

async function getManifest(repo: string, object: string, accept: string) {
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${object}`, { headers: { accept } });
  return {
    status: res.status,
    digest: res.headers.get('docker-content-digest'),
    body: Buffer.from(await res.arrayBuffer()),
  };
}

describe('push', () => {
  it('uploads blobs, then the manifest under the tag; a second push uploads nothing', async () => {
    const img = buildImage({ layers: [[file('a', noise(200_000))], [file('b', 'bee\n')]] });
    await storeImage(ctx, content, img.blobs);
    const events: PushEvent[] = [];
    await push(ctx, `${proxy.host}/pushed/app:v1`, img.manifest, {
      content,
      client: client(),
      onProgress: (e) => events.push(e),
    });

    const m = await getManifest('pushed/app', 'v1', img.manifest.mediaType);
    expect(m.status).toBe(200);
    expect(m.digest).toBe(img.manifest.digest);
    expect(m.body.equals(img.manifestBytes)).toBe(true);
    for (const l of img.layers) {
      const res = await fetch(`${registry.url}/v2/pushed/app/blobs/${l.desc.digest}`);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(l.desc.digest);
    }
    // The manifest went last.
    const puts = proxy.requests.filter((r) => r.method === 'PUT');
    expect(puts[puts.length - 1]!.path).toBe('/v2/pushed/app/manifests/v1');
    expect(events.filter((e) => e.status === 'done').map((e) => e.digest)).toContain(
      img.layers[0]!.desc.digest,
    );
    // The blobs remember their new home.
    expect(
      (await content.info(ctx, img.layers[0]!.desc.digest)).labels[
        'containerd.io/distribution.source.127.0.0.1'
      ],
    ).toBe('pushed/app');

    proxy.requests.length = 0;
    await push(ctx, `${proxy.host}/pushed/app:v2`, img.manifest, { content, client: client() });
    expect(
      proxy.requests.filter(
        (r) => r.method === 'PATCH' || (r.method === 'PUT' && r.path.includes('/blobs/')),
      ),
    ).toEqual([]);
    expect((await getManifest('pushed/app', 'v2', img.manifest.mediaType)).digest).toBe(img.manifest.digest);
  });

  it('mounts blobs from another repository of the same registry instead of uploading', async () => {
    const img = buildImage({ layers: [[file('shared', noise(100_000))]] });
    await storeImage(ctx, content, img.blobs);
    await push(ctx, `${proxy.host}/team/base:v1`, img.manifest, { content, client: client() });
    proxy.requests.length = 0;
    await push(ctx, `${proxy.host}/team/derived:v1`, img.manifest, { content, client: client() });
    const mounts = proxy.requests.filter((r) => r.method === 'POST' && r.path.includes('mount='));
    expect(mounts.length).toBe(2);
    expect(mounts.every((r) => r.path.includes('from=team%2Fbase') && r.status === 201)).toBe(true);
    expect(
      proxy.requests.filter(
        (r) => r.method === 'PATCH' || (r.method === 'PUT' && r.path.includes('/blobs/')),
      ),
    ).toEqual([]);
    expect((await getManifest('team/derived', 'v1', img.manifest.mediaType)).status).toBe(200);
  });

  it('uploads in chunks when asked, and the registry gets the right bytes', async () => {
    const img = buildImage({ layers: [[file('c', noise(250_000))]], compression: 'none' });
    await storeImage(ctx, content, img.blobs);
    await push(ctx, `${proxy.host}/chunked/app:v1`, img.manifest, {
      content,
      client: client(),
      chunkSize: 64 * 1024,
    });
    const layer = img.layers[0]!.desc;
    const patches = proxy.requests.filter((r) => r.method === 'PATCH');
    // The layer in four chunks, the small config in one.
    expect(patches.length).toBe(Math.ceil(layer.size / (64 * 1024)) + 1);
    const res = await fetch(`${registry.url}/v2/chunked/app/blobs/${layer.digest}`);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer.digest);
  });

  it('pushes an index with its manifests; what it pushed pulls back', async () => {
    const amd = buildImage({ layers: [[file('arch', 'amd64\n')]] });
    const arm = buildImage({
      layers: [[file('arch', 'arm64\n')]],
      platform: { os: 'linux', architecture: 'arm64' },
    });
    const idx = buildIndex(
      [amd, arm],
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    await storeImage(ctx, content, idx.blobs);
    await push(ctx, `${proxy.host}/multi/app:v1`, idx.index, { content, client: client() });
    expect((await getManifest('multi/app', 'v1', idx.index.mediaType)).digest).toBe(idx.index.digest);
    expect((await getManifest('multi/app', arm.manifest.digest, arm.manifest.mediaType)).status).toBe(200);

    const other = await openLocalStore(join(work, 'other'));
    const res = await pull(ctx, `${proxy.host}/multi/app:v1`, {
      content: other,
      client: client(),
      platform: 'linux/arm64',
    });
    expect(res.manifests.map((m) => m.digest)).toEqual([arm.manifest.digest]);
  });

  it('fails clearly when content is missing, before pushing any manifest', async () => {
    const img = buildImage({ layers: [[file('x', 'y')]] });
    const partial = new Map([...img.blobs].filter(([d]) => d !== img.layers[0]!.desc.digest));
    await storeImage(ctx, content, partial);
    const err = await push(ctx, `${proxy.host}/missing/app:v1`, img.manifest, {
      content,
      client: client(),
    }).catch((e) => e);
    expect(err.code).toBe('ERR_NOT_FOUND');
    expect(err.message).toContain(img.layers[0]!.desc.digest);
    expect(proxy.requests.filter((r) => r.path.includes('/manifests/') && r.method === 'PUT')).toEqual([]);
  });

  it('picks the mount source with the longest common path', () => {
    expect(mountCandidate('a/b,team/x/base,team/y', 'team/x/app')).toBe('team/x/base');
    expect(mountCandidate('team/x/app', 'team/x/app')).toBeUndefined();
    expect(mountCandidate(undefined, 'a')).toBeUndefined();
  });
});

describe('push with token auth', () => {
  let reg: Registry;
  beforeAll(async () => {
    reg = await startRegistry({ tokenAuth: { users: { bob: 'builder' }, anonymousPull: true } });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('asks for pull,push and pushes with credentials; anonymous push is refused', async () => {
    const img = buildImage({ layers: [[file('t', 'token\n')]] });
    await storeImage(ctx, content, img.blobs);
    const anon = await push(ctx, `${reg.host}/tok/app:v1`, img.manifest, {
      content,
      client: new RegistryClient({ retries: 0 }),
    }).catch((e) => e);
    expect(anon.code).toBe('ERR_PERMISSION_DENIED');
    await push(ctx, `${reg.host}/tok/app:v1`, img.manifest, {
      content,
      client: new RegistryClient({ credentials: staticCredentials('bob:builder') }),
    });
    expect(
      reg.tokenServer!.requests.some(
        (r) => r.account === 'bob' && r.scopes.includes('repository:tok/app:pull,push'),
      ),
    ).toBe(true);
    const other = await openLocalStore(join(work, 'other'));
    const res = await pull(ctx, `${reg.host}/tok/app:v1`, { content: other, client: new RegistryClient() });
    expect(res.image.target.digest).toBe(img.manifest.digest);
  });
});
