import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentStore, Context } from '@berth/api';
import { openLocalStore } from '@berth/content';
import { fetchBlob, ingestRef, pull, RegistryClient } from '@berth/images';
import { type FaultyProxy, type Registry, startFaultyProxy, startRegistry } from '@berth/testkit';
import { type BuiltImage, buildImage, file, noise, pushImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
let registry: Registry;
let proxy: FaultyProxy;
let work: string;
let content: ContentStore;
let img: BuiltImage;
const SIZE = 4_000_000;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultyProxy(registry);
  img = buildImage({ layers: [[file('small', 'x')], [file('big', noise(SIZE))]], compression: 'none' });
  await pushImage(registry.url, 'lies/app', 'v1', img);
});

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'berth-faults-'));
  content = await openLocalStore(join(work, 'content'));
  proxy.clearFaults();
  proxy.requests.length = 0;
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const client = (opts: ConstructorParameters<typeof RegistryClient>[0] = {}) =>
  new RegistryClient({ retryDelayMs: 5, ...opts });
const REF = () => `${proxy.host}/lies/app:v1`;
const big = () => img.layers[1]!.desc;
const blobPath = (d: string) => `/blobs/${d}`;

async function committed(digest: string): Promise<boolean> {
  try {
    await content.info(ctx, digest);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NOT_FOUND') return false;
    throw e;
  }
}

async function ingestOffset(ref: string): Promise<number> {
  try {
    return (await content.status(ctx, ref)).offset;
  } catch {
    return 0;
  }
}

describe('a registry that lies', () => {
  it('wrong digest: a clear error and nothing committed, nothing kept in the ingest', async () => {
    proxy.addFault({ method: 'GET', path: blobPath(big().digest), fault: { kind: 'corrupt' } });
    const err = await pull(ctx, REF(), { content, client: client() }).catch((e) => e);
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toContain(big().digest);
    expect(err.message).toMatch(/does not match its digest; nothing was committed/);
    expect(await committed(big().digest)).toBe(false);
    expect(await ingestOffset(ingestRef(big()))).toBe(0);
    // The honest blobs of the same image are in.
    expect(await committed(img.config.digest)).toBe(true);
  });

  it('a corrupt config is refused before it reaches the store', async () => {
    proxy.addFault({ method: 'GET', path: blobPath(img.config.digest), fault: { kind: 'corrupt' } });
    const err = await pull(ctx, REF(), { content, client: client() }).catch((e) => e);
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toMatch(new RegExp(`${img.config.digest}.*digest mismatch`));
    expect(await committed(img.config.digest)).toBe(false);
  });

  it('truncated once: the retry asks for the rest only and the pull succeeds', async () => {
    proxy.addFault({
      method: 'GET',
      path: blobPath(big().digest),
      fault: { kind: 'truncate', bytes: 1_000_000 },
      times: 1,
    });
    await pull(ctx, REF(), { content, client: client() });
    expect(await committed(big().digest)).toBe(true);
    const reqs = proxy.requests.filter((r) => r.path.endsWith(big().digest));
    expect(reqs).toHaveLength(2);
    expect(reqs[0]!.range).toBeUndefined();
    // The retry starts where the received bytes end (the proxy may have written more than arrived).
    const from = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(reqs[0]!.bytes);
    expect(reqs[1]!.bytes).toBe(big().size - from);
  });

  it('truncated every time: gives up with a clear error, nothing committed', async () => {
    proxy.addFault({ method: 'GET', path: blobPath(big().digest), fault: { kind: 'truncate', bytes: 0 } });
    const err = await pull(ctx, REF(), { content, client: client({ retries: 2 }) }).catch((e) => e);
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(err.message).toMatch(
      new RegExp(`${big().digest}.*giving up after 3 attempts at 0 of ${big().size} bytes`),
    );
    expect(await committed(big().digest)).toBe(false);
  });

  it('500 then success: retried, for manifests and blobs alike', async () => {
    proxy.addFault({ path: '/manifests/v1', fault: { kind: 'status', status: 500 }, times: 2 });
    proxy.addFault({
      method: 'GET',
      path: blobPath(big().digest),
      fault: { kind: 'status', status: 503 },
      times: 1,
    });
    const res = await pull(ctx, REF(), { content, client: client() });
    expect(res.image.target.digest).toBe(img.manifest.digest);
    expect(proxy.requests.filter((r) => r.status >= 500)).toHaveLength(3);
  });

  it('429 with Retry-After: waits as told, then succeeds', async () => {
    proxy.addFault({
      method: 'GET',
      path: blobPath(big().digest),
      fault: { kind: 'status', status: 429, retryAfter: '1' },
      times: 1,
    });
    const res = await pull(ctx, REF(), { content, client: client({ retryDelayMs: 1 }) });
    expect(res.image.target.digest).toBe(img.manifest.digest);
    const reqs = proxy.requests.filter((r) => r.path.endsWith(big().digest));
    expect(reqs.map((r) => r.status)).toEqual([429, 200]);
  });

  it('5xx for ever: fails naming the status after the retries', async () => {
    proxy.addFault({ path: '/manifests/', fault: { kind: 'status', status: 502 } });
    const err = await pull(ctx, REF(), { content, client: client({ retries: 2 }) }).catch((e) => e);
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(err.message).toMatch(/502/);
    expect(proxy.requests.filter((r) => r.status === 502)).toHaveLength(3);
  });

  it('a stalled download fails after the progress timeout instead of hanging', async () => {
    proxy.addFault({ method: 'GET', path: blobPath(big().digest), fault: { kind: 'stall', bytes: 0 } });
    const err = await pull(ctx, REF(), {
      content,
      client: client({ progressTimeoutMs: 300, retries: 1 }),
    }).catch((e) => e);
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(err.message).toMatch(
      /giving up after 2 attempts at 0 of \d+ bytes: .*no data received for 300 ms/,
    );
    expect(await committed(big().digest)).toBe(false);
  });

  it('an oversized manifest is refused with the limit named', async () => {
    const huge = JSON.stringify({ schemaVersion: 2, config: {}, layers: [], pad: 'x'.repeat(5 << 20) });
    proxy.addFault({
      path: '/manifests/v1',
      fault: { kind: 'replace', body: huge, contentType: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const err = await pull(ctx, REF(), { content, client: client() }).catch((e) => e);
    expect(err.code).toBe('ERR_RESOURCE_EXHAUSTED');
    expect(err.message).toMatch(/rejecting \d+ byte manifest: larger than the 4194304 byte limit/);
  });

  it('a manifest of malformed JSON is refused and not stored', async () => {
    const bad = '{"schemaVersion": 2, "config": ';
    proxy.addFault({
      path: '/manifests/',
      fault: { kind: 'replace', body: bad, contentType: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const err = await pull(ctx, REF(), { content, client: client() }).catch((e) => e);
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    expect(err.message).toMatch(/manifest sha256:[0-9a-f]{64}: malformed: invalid JSON/);
    const stored: string[] = [];
    await content.walk(ctx, (i) => {
      stored.push(i.digest);
    });
    expect(stored).toEqual([]);
  });

  it('a manifest body that does not match the digest asked for is refused', async () => {
    proxy.addFault({
      method: 'GET',
      path: `/manifests/${img.manifest.digest}`,
      fault: { kind: 'replace', body: '{"schemaVersion":2,"config":{},"layers":[]}' },
    });
    const err = await pull(ctx, REF(), { content, client: client({ retries: 0 }) }).catch((e) => e);
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toContain(img.manifest.digest);
    expect(err.message).toMatch(/registry announces 43 bytes, descriptor says \d+/);
  });
});

describe('resume', () => {
  it('continues from the bytes in the ingest after a failed run, in a new store instance', async () => {
    // First run: the big layer stalls after 1.5 MB and the pull gives up.
    proxy.addFault({
      method: 'GET',
      path: blobPath(big().digest),
      fault: { kind: 'stall', bytes: 1_500_000 },
      times: 1,
    });
    await expect(
      pull(ctx, REF(), { content, client: client({ progressTimeoutMs: 1000, retries: 0 }) }),
    ).rejects.toThrow(/no data received/);
    const have = await ingestOffset(ingestRef(big()));
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThanOrEqual(1_500_000);
    const servedBefore = proxy.bytesServed(big().digest);

    // "Restart": a fresh store on the same root, a fresh client.
    const again = await openLocalStore(join(work, 'content'));
    await pull(ctx, REF(), { content: again, client: client() });
    expect((await again.info(ctx, big().digest)).size).toBe(big().size);
    const last = proxy.requests.filter((r) => r.path.endsWith(big().digest)).pop()!;
    expect(last.range).toBe(`bytes=${have}-`);
    // Bytes already fetched were not fetched again.
    expect(proxy.bytesServed(big().digest) - servedBefore).toBe(big().size - have);
  });

  it('restarts from zero when the server ignores Range', async () => {
    proxy.addFault({
      method: 'GET',
      path: blobPath(big().digest),
      fault: { kind: 'truncate', bytes: 1_000_000 },
      times: 1,
    });
    proxy.addFault({ method: 'GET', path: blobPath(big().digest), fault: { kind: 'ignore-range' } });
    await pull(ctx, REF(), { content, client: client() });
    expect((await content.info(ctx, big().digest)).size).toBe(big().size);
    const reqs = proxy.requests.filter((r) => r.path.endsWith(big().digest));
    expect(reqs).toHaveLength(2);
    expect(reqs[1]!.bytes).toBe(big().size);
  });

  it('a resumed ingest with a bad prefix is downloaded once from scratch', async () => {
    const desc = big();
    const w = await content.writer(ctx, { ref: ingestRef(desc), desc });
    await w.write(Buffer.alloc(500_000, 0x41));
    await w.close();
    const repo = await client().repository(REF());
    expect(await fetchBlob(ctx, repo, content, desc)).toBe('fetched');
    expect((await content.info(ctx, desc.digest)).size).toBe(desc.size);
    const reqs = proxy.requests.filter((r) => r.path.endsWith(desc.digest));
    expect(reqs.map((r) => r.range)).toEqual(['bytes=500000-', undefined]);
  });

  it('a finished ingest is committed without a request', async () => {
    const desc = img.layers[0]!.desc;
    const w = await content.writer(ctx, { ref: ingestRef(desc), desc });
    await w.write(img.layers[0]!.data);
    await w.close();
    const repo = await client().repository(REF());
    expect(await fetchBlob(ctx, repo, content, desc)).toBe('fetched');
    expect(proxy.requests.filter((r) => r.path.endsWith(desc.digest))).toEqual([]);
  });

  it('a blob already in the store is not fetched', async () => {
    const desc = img.layers[0]!.desc;
    const repo = await client().repository(REF());
    expect(await fetchBlob(ctx, repo, content, desc)).toBe('fetched');
    expect(await fetchBlob(ctx, repo, content, desc)).toBe('exists');
    expect(proxy.requests.filter((r) => r.path.endsWith(desc.digest))).toHaveLength(1);
  });
});
