/**
 * `berth images pull` through berthd when things go wrong, with a proxy in front of
 * Debian's docker-registry that lies on request and counts the bytes it serves: wrong
 * digests, truncated bodies, oversized and malformed manifests, 500s; berthd SIGKILLed in
 * the middle of a 100 MB layer and the pull run again; ten pulls of one image at once.
 * Each test pulls an image of its own (content is shared between namespaces, so a blob
 * pulled once would never be fetched again).
 */
import { randomBytes } from 'node:crypto';
import { type Client, connect } from '@berth/client';
import {
  type BuiltImage,
  berth,
  buildImage,
  type Daemon,
  type FaultyProxy,
  file,
  pushToRegistry,
  type Registry,
  type RunResult,
  registryInstalled,
  removeDir,
  startBerthd,
  startFaultyProxy,
  startRegistry,
  writeTar,
} from '@berth/testkit';

const ready = registryInstalled() && process.getuid?.() === 0;
const suite = ready ? describe : describe.skip;
if (!ready) it.skip('needs docker-registry and root', () => {});

suite('berth images pull through a lying registry', () => {
  let registry: Registry;
  let proxy: FaultyProxy;
  let daemon: Daemon;
  let client: Client;
  let counter = 0;

  beforeAll(async () => {
    [registry, daemon] = await Promise.all([startRegistry(), startBerthd()]);
    proxy = await startFaultyProxy(registry);
    client = connect(daemon.address);
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await proxy?.close();
    await Promise.all([daemon?.dispose(), registry?.stop()]);
  });

  afterEach(() => proxy.clearFaults());

  /** A fresh small image pushed as e2e/<name>:v1; returns it and its reference through the proxy. */
  async function fresh(layerBytes = 400_000): Promise<{ image: BuiltImage; ref: string; ns: string }> {
    const name = `app${++counter}`;
    const image = buildImage({
      layers: [[file('etc/motd', `image ${name}\n`)], [file('srv/blob', randomBytes(layerBytes))]],
    });
    await pushToRegistry(registry.url, `e2e/${name}`, 'v1', image);
    return { image, ref: `${proxy.host}/e2e/${name}:v1`, ns: `faults-${name}` };
  }

  const pull = (ns: string, ref: string): Promise<RunResult> =>
    berth(daemon.address, ['-n', ns, 'images', 'pull', ref]);
  const blobPath = (digest: string) => `/blobs/${digest}`;
  const gets = (digest: string) =>
    proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(blobPath(digest)));
  const absent = async (ns: string, digest: string) =>
    expect(client.content.info({ namespace: ns }, digest)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });

  it('refuses a layer whose bytes do not match its digest, committing nothing', async () => {
    const { image, ref, ns } = await fresh();
    const layer = image.layers[1]!.desc.digest;
    proxy.addFault({ method: 'GET', path: blobPath(layer), fault: { kind: 'corrupt' } });
    const r = await pull(ns, ref);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(layer);
    expect(r.stderr).toMatch(/does not match its digest/);
    await absent(ns, layer);
    await expect(client.images.get({ namespace: ns }, ref)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('resumes a truncated body where it stopped and succeeds', async () => {
    const { image, ref, ns } = await fresh();
    const layer = image.layers[1]!.desc;
    proxy.addFault({
      method: 'GET',
      path: blobPath(layer.digest),
      fault: { kind: 'truncate', bytes: 100_000 },
      times: 1,
    });
    const r = await pull(ns, ref);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await client.content.info({ namespace: ns }, layer.digest)).size).toBe(layer.size);
    const tries = gets(layer.digest);
    expect(tries.length).toBe(2);
    // The retry asked only for what was missing.
    expect(tries[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(/bytes=(\d+)-/.exec(tries[1]!.range!)![1])).toBeGreaterThan(0);
  });

  it('retries a 500 and succeeds', async () => {
    const { image, ref, ns } = await fresh();
    const layer = image.layers[1]!.desc.digest;
    proxy.addFault({
      method: 'GET',
      path: blobPath(layer),
      fault: { kind: 'status', status: 500 },
      times: 2,
    });
    const r = await pull(ns, ref);
    expect(r.code).toBe(0);
    expect(gets(layer).map((x) => x.status)).toEqual([500, 500, 200]);
  });

  it('refuses an oversized manifest before reading it, storing no image', async () => {
    const { ref, ns } = await fresh();
    const huge = JSON.stringify({ schemaVersion: 2, padding: 'x'.repeat(5 << 20) });
    proxy.addFault({
      path: /\/manifests\/v1$/,
      fault: { kind: 'replace', body: huge, contentType: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const r = await pull(ns, ref);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/too large|exceeds|larger than/i);
    await expect(client.images.get({ namespace: ns }, ref)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(await client.content.list({ namespace: ns })).toEqual([]);
  });

  it('refuses a manifest that is not JSON, storing nothing', async () => {
    const { ref, ns } = await fresh();
    proxy.addFault({
      path: /\/manifests\//,
      fault: {
        kind: 'replace',
        body: '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": ',
        contentType: 'application/vnd.oci.image.manifest.v1+json',
      },
    });
    const r = await pull(ns, ref);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/json|malformed|invalid/i);
    expect(await client.content.list({ namespace: ns })).toEqual([]);
  });

  it('fetches each blob once for ten concurrent pulls of one image', async () => {
    const { image, ref, ns } = await fresh(2_000_000);
    const results = await Promise.all(Array.from({ length: 10 }, () => pull(ns, ref)));
    for (const r of results) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    for (const d of [image.config, ...image.layers.map((l) => l.desc)]) {
      expect(gets(d.digest).length).toBe(1);
      expect(proxy.bytesServed(blobPath(d.digest))).toBe(d.size);
    }
    expect((await client.images.get({ namespace: ns }, ref)).target.digest).toBe(image.target.digest);
  });
});

suite('berth images pull after berthd is SIGKILLed mid-layer', () => {
  const SIZE = 100 << 20;
  let registry: Registry;
  let proxy: FaultyProxy;
  let daemon: Daemon | undefined;
  let dir: string | undefined;
  let image: BuiltImage;

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultyProxy(registry);
    const big = writeTar([{ name: 'big.bin', type: 'file', data: randomBytes(SIZE) }]);
    image = buildImage({ layers: [[file('etc/motd', 'big\n')], { tar: big }] });
    await pushToRegistry(registry.url, 'e2e/big', 'v1', image);
  }, 180_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir) removeDir(dir);
    await proxy?.close();
    await registry?.stop();
  });

  it('does not fetch again the bytes it already had', async () => {
    const ns = 'resume';
    const ctx = { namespace: ns };
    const layer = image.layers[1]!.desc;
    const ref = `${proxy.host}/e2e/big:v1`;
    const half = Math.floor(layer.size / 2);
    // The registry goes quiet after half the layer: berthd is killed while it waits.
    proxy.addFault({
      method: 'GET',
      path: `/blobs/${layer.digest}`,
      fault: { kind: 'stall', bytes: half },
      times: 1,
    });
    daemon = await startBerthd();
    dir = daemon.dir;
    let client = connect(daemon.address);
    const first = berth(daemon.address, ['-n', ns, 'images', 'pull', ref]);
    const deadline = Date.now() + 120_000;
    let offset = 0;
    while (offset < half) {
      if (Date.now() > deadline) throw new Error(`ingest stuck at ${offset} of ${half}\n${daemon.logs()}`);
      await new Promise((r) => setTimeout(r, 100));
      const st = (await client.content.listStatuses(ctx)).find((s) => s.ref.includes(layer.digest));
      offset = st?.offset ?? 0;
    }
    client.close();
    await daemon.stop('SIGKILL');
    expect((await first).code).toBe(1);
    proxy.clearFaults();
    const servedBefore = proxy.bytesServed(`/blobs/${layer.digest}`);
    expect(servedBefore).toBe(half);

    daemon = await startBerthd({ dir });
    client = connect(daemon.address);
    try {
      const kept = (await client.content.listStatuses(ctx)).find((s) => s.ref.includes(layer.digest));
      expect(kept?.offset).toBe(half);
      const second = await berth(daemon.address, ['-n', ns, 'images', 'pull', ref]);
      expect(second.stderr).toBe('');
      expect(second.code).toBe(0);
      expect(second.stdout).toContain(`resuming at`);
      // Only the missing half came over the wire, asked for with a Range request.
      expect(proxy.bytesServed(`/blobs/${layer.digest}`) - servedBefore).toBe(layer.size - half);
      const last = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(layer.digest)).at(-1)!;
      expect(last.range).toBe(`bytes=${half}-`);
      expect((await client.content.info(ctx, layer.digest)).size).toBe(layer.size);
      expect(await client.content.listStatuses(ctx)).toEqual([]);
    } finally {
      client.close();
    }
  }, 240_000);
});
