import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Context, digestOf, nowNanos, readBlob, toNanos } from '@berth/api';
import { type LocalStore, openLocalStore } from '@berth/content';
import { runContentStoreSuite } from '@berth/content/testing';

const ctx: Context = {};
const temps: string[] = [];

function tempRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-content-'));
  temps.push(dir);
  return dir;
}

afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

runContentStoreSuite('local', async () => {
  const root = mkdtempSync(join(tmpdir(), 'berth-content-suite-'));
  const store = await openLocalStore(root);
  return { store, ctx: {}, cleanup: async () => rmSync(root, { recursive: true, force: true }) };
});

async function errorOf(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  throw new Error('expected a rejection');
}

function blob(size: number) {
  const data = randomBytes(size);
  return { data, digest: digestOf(data) };
}

async function put(store: LocalStore, ref: string, data: Buffer, labels?: Record<string, string>) {
  const w = await store.writer(ctx, { ref });
  await w.write(data);
  await w.commit(data.length, digestOf(data), labels ? { labels } : undefined);
  await w.close();
}

const ingestHash = (ref: string) => createHash('sha256').update(ref).digest('hex');

describe('LocalStore on disk', () => {
  it('lays blobs, ingests and labels out as documented', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const b = blob(100);
    await put(store, 'layout', b.data, { a: 'b' });
    const hex = b.digest.slice('sha256:'.length);
    expect(readFileSync(join(root, 'blobs', 'sha256', hex))).toEqual(b.data);
    expect(JSON.parse(readFileSync(join(root, 'labels', 'sha256', `${hex}.json`), 'utf8')).labels).toEqual({
      a: 'b',
    });

    const w = await store.writer(ctx, { ref: 'layout-ingest', desc: { size: 10, digest: blob(10).digest } });
    await w.write(Buffer.from('abc'));
    await w.close();
    const dir = join(root, 'ingest', ingestHash('layout-ingest'));
    expect(readdirSync(dir).sort()).toEqual(['data', 'expected', 'ref', 'startedat', 'total', 'updatedat']);
    expect(readFileSync(join(dir, 'ref'), 'utf8')).toBe('layout-ingest');
    expect(readFileSync(join(dir, 'data'), 'utf8')).toBe('abc');
    expect(readFileSync(join(dir, 'total'), 'utf8')).toBe('10');
  });

  it('keeps labels, their update time and open ingests across a reopen', async () => {
    const root = tempRoot();
    const s1 = await openLocalStore(root);
    const b = blob(64);
    await put(s1, 'persist', b.data, { k: 'v' });
    await new Promise((r) => setTimeout(r, 15));
    const updated = await s1.update(ctx, { digest: b.digest, labels: { k: 'v2', n: '1' } });
    const half = blob(1000);
    const w = await s1.writer(ctx, { ref: 'persist-ingest', desc: { size: 1000, digest: half.digest } });
    await w.write(half.data.subarray(0, 400));
    const started = (await w.status()).startedAt;
    await w.close();

    const s2 = await openLocalStore(root);
    const info = await s2.info(ctx, b.digest);
    expect(info.labels).toEqual({ k: 'v2', n: '1' });
    expect(info.updatedAt.getTime()).toBe(updated.updatedAt.getTime());
    expect(info.updatedAt.getTime()).toBeGreaterThan(info.createdAt.getTime());
    expect(await s2.status(ctx, 'persist-ingest')).toMatchObject({
      ref: 'persist-ingest',
      offset: 400,
      total: 1000,
      expected: half.digest,
      startedAt: started,
    });
    expect((await s2.listStatuses(ctx)).map((s) => s.ref)).toEqual(['persist-ingest']);
    const w2 = await s2.writer(ctx, { ref: 'persist-ingest' });
    expect(w2.digest()).toBe(digestOf(half.data.subarray(0, 400)));
    await w2.write(half.data.subarray(400));
    await w2.commit(0); // size and digest come from the stored ingest
    expect(digestOf(await readBlob(s2, ctx, { digest: half.digest }))).toBe(half.digest);
  });

  it('drops labels at commit and refuses update when labels are off', async () => {
    const root = tempRoot();
    const store = await openLocalStore({ root, labels: false });
    const b = blob(10);
    await put(store, 'nolabels', b.data, { a: 'b' });
    expect((await store.info(ctx, b.digest)).labels).toEqual({});
    expect(existsSync(join(root, 'labels'))).toBe(false);
    expect(await errorOf(store.update(ctx, { digest: b.digest, labels: {} }))).toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
    });
  });

  it('filters walk by size', async () => {
    const store = await openLocalStore(tempRoot());
    const [a, b] = [blob(10), blob(20)];
    await put(store, 'a', a.data);
    await put(store, 'b', b.data);
    const seen: string[] = [];
    await store.walk(ctx, (i) => void seen.push(i.digest), ['size==20']);
    expect(seen).toEqual([b.digest]);
  });

  it('walks past debris in blobs/ without reporting it', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const b = blob(10);
    await put(store, 'a', b.data);
    writeFileSync(join(root, 'blobs', 'sha256', 'not-a-digest'), 'x');
    writeFileSync(join(root, 'blobs', 'sha256', 'abc'), 'x');
    const seen: string[] = [];
    await store.walk(ctx, (i) => void seen.push(i.digest));
    expect(seen).toEqual([b.digest]);
  });
});

describe('LocalStore times keep nanoseconds', () => {
  /** pre < t < post on the process's strictly increasing nanosecond clock. */
  const expectBetween = (t: Date, pre: bigint, post: bigint) => {
    const n = toNanos(t);
    expect(n > pre && n < post).toBe(true);
  };

  it('reports ingest times from the clock and reads them back exactly after a reopen', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const b = blob(64);
    const pre = nowNanos();
    const w = await store.writer(ctx, { ref: 'ns-ingest', desc: { size: 64, digest: b.digest } });
    const mid = nowNanos();
    const st0 = await w.status();
    expectBetween(st0.startedAt, pre, mid);
    await w.write(b.data.subarray(0, 10));
    const post = nowNanos();
    const st1 = await w.status();
    expectBetween(st1.updatedAt, mid, post);
    expect(toNanos(st1.updatedAt) > toNanos(st1.startedAt)).toBe(true);
    await w.close();

    const again = await (await openLocalStore(root)).status(ctx, 'ns-ingest');
    expect([toNanos(again.startedAt), toNanos(again.updatedAt)]).toEqual([
      toNanos(st0.startedAt),
      toNanos(st1.updatedAt),
    ]);
    const dir = join(root, 'ingest', ingestHash('ns-ingest'));
    expect(readFileSync(join(dir, 'startedat'), 'utf8')).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/,
    );
  });

  it('creates a blob at its commit and updates it after, exactly as read back', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const b = blob(64);
    const w = await store.writer(ctx, { ref: 'ns-blob' });
    await w.write(b.data);
    const pre = nowNanos();
    await w.commit(64, b.digest, { labels: { a: 'b' } });
    const post = nowNanos();
    await w.close();
    const info = await store.info(ctx, b.digest);
    // The mtime holds the commit time to utimes' precision (a double of seconds: < 1 us).
    expectBetween(info.createdAt, pre - 1000n, post);
    expect(toNanos(info.updatedAt)).toBe(toNanos(info.createdAt));

    const updated = await store.update(ctx, { digest: b.digest, labels: { a: 'c' } });
    expect(toNanos(updated.updatedAt) > toNanos(info.createdAt)).toBe(true);
    const again = await (await openLocalStore(root)).info(ctx, b.digest);
    expect([toNanos(again.createdAt), toNanos(again.updatedAt)]).toEqual([
      toNanos(info.createdAt),
      toNanos(updated.updatedAt),
    ]);
  });

  it('reads sub-millisecond digits from its files, and the millisecond files it wrote before', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const b = blob(32);
    await put(store, 'ns-files', b.data, { a: 'b' });
    const labels = join(root, 'labels', 'sha256', `${b.digest.slice(7)}.json`);
    writeFileSync(
      labels,
      JSON.stringify({ labels: { a: 'b' }, updatedAt: '2025-12-06T11:25:25.915261957Z' }),
    );
    expect(toNanos((await store.info(ctx, b.digest)).updatedAt)).toBe(1_765_020_325_915_261_957n);
    writeFileSync(labels, JSON.stringify({ labels: { a: 'b' }, updatedAt: '2025-12-06T11:25:25.915Z' }));
    expect(toNanos((await store.info(ctx, b.digest)).updatedAt)).toBe(1_765_020_325_915_000_000n);

    const w = await store.writer(ctx, { ref: 'ns-old-ingest' });
    await w.close();
    const dir = join(root, 'ingest', ingestHash('ns-old-ingest'));
    writeFileSync(join(dir, 'startedat'), '2020-01-01T00:00:00.123Z');
    writeFileSync(join(dir, 'updatedat'), '2020-01-01T00:00:00.123456789Z');
    const { utimesSync } = await import('node:fs');
    utimesSync(join(dir, 'data'), 1_500_000_000, 1_500_000_000); // older than updatedat: not used
    const st = await store.status(ctx, 'ns-old-ingest');
    expect(toNanos(st.startedAt)).toBe(1_577_836_800_123_000_000n);
    expect(toNanos(st.updatedAt)).toBe(1_577_836_800_123_456_789n);
  });
});

describe('LocalWriter', () => {
  it('truncates to any size up to the offset and rehashes', async () => {
    const store = await openLocalStore(tempRoot());
    const b = blob(100);
    const w = await store.writer(ctx, { ref: 't' });
    await w.write(b.data.subarray(0, 70));
    await w.write(randomBytes(30));
    await w.truncate(70);
    expect((await w.status()).offset).toBe(70);
    expect(w.digest()).toBe(digestOf(b.data.subarray(0, 70)));
    expect(await errorOf(w.truncate(71))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: /71/ });
    expect(await errorOf(w.truncate(-1))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await w.write(b.data.subarray(70));
    await w.commit(100, b.digest);
    expect(digestOf(await readBlob(store, ctx, b))).toBe(b.digest);
  });

  it('stays usable after a failed commit, so the client can finish the ingest', async () => {
    const store = await openLocalStore(tempRoot());
    const b = blob(50);
    const w = await store.writer(ctx, { ref: 'fix', desc: { size: 50, digest: b.digest } });
    await w.write(b.data.subarray(0, 20));
    expect(await errorOf(w.commit(0))).toMatchObject({ code: 'ERR_FAILED_PRECONDITION', message: /20.*50/ });
    await w.write(b.data.subarray(20));
    await w.commit(0);
    expect(digestOf(await readBlob(store, ctx, b))).toBe(b.digest);
  });

  it('keeps order and digest when writes are not awaited one by one', async () => {
    const store = await openLocalStore(tempRoot());
    const b = blob(1 << 20);
    const w = await store.writer(ctx, { ref: 'pipelined' });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < b.data.length; i += 4096) writes.push(w.write(b.data.subarray(i, i + 4096)));
    await Promise.all(writes);
    expect(w.digest()).toBe(b.digest);
    await w.commit(b.data.length, b.digest);
    expect(digestOf(await readBlob(store, ctx, b))).toBe(b.digest);
  });

  it('honours the digest algorithm of the descriptor', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const data = randomBytes(200);
    const d512 = digestOf(data, 'sha512');
    const w = await store.writer(ctx, { ref: 'sha512', desc: { digest: d512 } });
    await w.write(data);
    expect(w.digest()).toBe(d512);
    await w.commit(200, d512);
    expect(existsSync(join(root, 'blobs', 'sha512', d512.slice('sha512:'.length)))).toBe(true);
    expect((await store.info(ctx, d512)).size).toBe(200);
  });

  it('starts over when reopened for different content under the same ref', async () => {
    const store = await openLocalStore(tempRoot());
    const [a, b] = [blob(100), blob(100)];
    const w1 = await store.writer(ctx, { ref: 'moved', desc: { size: 100, digest: a.digest } });
    await w1.write(a.data.subarray(0, 60));
    await w1.close();
    const w2 = await store.writer(ctx, { ref: 'moved', desc: { size: 100, digest: b.digest } });
    expect((await w2.status()).offset).toBe(0);
    await w2.write(b.data);
    await w2.commit(0);
    expect(digestOf(await readBlob(store, ctx, b))).toBe(b.digest);
  });

  it('frees its ref as close is called: a writer opened before the close settles resumes', async () => {
    const store = await openLocalStore(tempRoot());
    const b = blob(300);
    const desc = { size: 300, digest: b.digest };
    const w1 = await store.writer(ctx, { ref: 'reopen', desc });
    await w1.write(b.data.subarray(0, 120));
    const updated = (await w1.status()).updatedAt;
    // Not awaited, as containerd's client reopens right after its close.
    const closed = w1.close();
    const [st, w2] = await Promise.all([
      store.status(ctx, 'reopen'),
      store.writer(ctx, { ref: 'reopen', desc }),
    ]);
    await closed;
    expect(st).toMatchObject({ offset: 120, updatedAt: updated });
    expect(await w2.status()).toMatchObject({ offset: 120, updatedAt: updated });
    expect(w2.digest()).toBe(digestOf(b.data.subarray(0, 120)));
    // The ref is held again, by w2.
    expect(await errorOf(store.writer(ctx, { ref: 'reopen' }))).toMatchObject({
      code: 'ERR_UNAVAILABLE',
      message: /ref reopen locked/,
    });
    // The closed writer is done with: it neither writes nor releases w2's lock twice.
    expect(await errorOf(w1.write(Buffer.from('late')))).toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
    await w1.close();
    expect(await errorOf(store.writer(ctx, { ref: 'reopen' }))).toMatchObject({ code: 'ERR_UNAVAILABLE' });
    await w2.write(b.data.subarray(120));
    await w2.commit(0);
    expect(digestOf(await readBlob(store, ctx, b))).toBe(b.digest);
  });

  it('an abort right after a close removes the ingest the close was still writing', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const w = await store.writer(ctx, { ref: 'gone' });
    await w.write(Buffer.from('some bytes'));
    const closed = w.close();
    await store.abort(ctx, 'gone');
    await closed;
    expect(await errorOf(store.status(ctx, 'gone'))).toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(readdirSync(join(root, 'ingest'))).toEqual([]);
  });

  it('rejects a negative or fractional descriptor size as InvalidArgument', async () => {
    const store = await openLocalStore(tempRoot());
    for (const size of [-1, 1.5]) {
      expect(await errorOf(store.writer(ctx, { ref: 'neg', desc: { size } }))).toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
    }
    // The refusal did not take the ref.
    await (await store.writer(ctx, { ref: 'neg' })).close();
  });
});

describe('LocalStore integrity', () => {
  it('lets one of two concurrent commits of the same content win; the other is AlreadyExists', async () => {
    const root = tempRoot();
    // Two store instances on one root share the process-wide commit order.
    const [s1, s2] = [await openLocalStore(root), await openLocalStore(root)];
    for (let round = 0; round < 5; round++) {
      const b = blob(4096);
      const w1 = await s1.writer(ctx, { ref: `one-${round}` });
      const w2 = await s2.writer(ctx, { ref: `two-${round}` });
      await Promise.all([w1.write(b.data), w2.write(b.data)]);
      const results = await Promise.allSettled([w1.commit(4096, b.digest), w2.commit(4096, b.digest)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason.code).toBe('ERR_ALREADY_EXISTS');
      await Promise.all([w1.close(), w2.close()]);
      expect(digestOf(await readBlob(s1, ctx, b))).toBe(b.digest);
      expect(await s1.listStatuses(ctx)).toEqual([]);
    }
  });

  it('never shows a blob whose bytes were corrupted in the ingest', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const b = blob(4096);
    const w = await store.writer(ctx, { ref: 'corrupt', desc: { size: 4096, digest: b.digest } });
    await w.write(b.data);
    await w.close();
    const data = join(root, 'ingest', ingestHash('corrupt'), 'data');
    const bytes = readFileSync(data);
    bytes[100] ^= 0xff;
    writeFileSync(data, bytes);
    const w2 = await store.writer(ctx, { ref: 'corrupt' });
    expect(await errorOf(w2.commit(4096, b.digest))).toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
    await w2.close();
    expect(readdirSync(join(root, 'blobs', 'sha256'))).toEqual([]);
  });

  it('ignores a half-made ingest directory and lets abort clear it', async () => {
    const root = tempRoot();
    const store = await openLocalStore(root);
    const dir = join(root, 'ingest', ingestHash('halfmade'));
    // As if a process died after mkdir: no ref, no data.
    mkdirSync(dir);
    expect((await store.listStatuses(ctx)).length).toBe(0);
    expect(await errorOf(store.status(ctx, 'halfmade'))).toMatchObject({ code: 'ERR_NOT_FOUND' });
    const w = await store.writer(ctx, { ref: 'halfmade' });
    expect((await w.status()).offset).toBe(0);
    await w.close();
    await store.abort(ctx, 'halfmade');
    expect(existsSync(dir)).toBe(false);
  });

  describe('a writer process killed with SIGKILL', () => {
    let child: ChildProcess | undefined;

    afterEach(async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child!.once('exit', r));
        process.kill(child.pid!, 'SIGKILL');
        await exited;
      }
      child = undefined;
    });

    it('leaves an ingest that resumes from its offset and commits intact', async () => {
      const root = tempRoot();
      const source = join(tempRoot(), 'source');
      const b = blob(8 << 20);
      writeFileSync(source, b.data);
      const script = join(__dirname, 'fixtures', 'ingest-child.js');
      child = spawn(process.execPath, [script, root, 'killed', source, b.digest, '50'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d) => {
        stderr += d;
      });
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child!.stdout!.on('data', (d) => {
          out += d;
          if (out.includes('half')) resolve();
        });
        child!.once('exit', (code) => reject(new Error(`child exited (${code}) early: ${stderr}`)));
      });
      const exited = new Promise((r) => child!.once('exit', (_code, signal) => r(signal)));
      process.kill(child.pid!, 'SIGKILL');
      expect(await exited).toBe('SIGKILL');

      // Nothing of it is visible as content.
      expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([]);
      const store = await openLocalStore(root);
      const st = await store.status(ctx, 'killed');
      expect(st.offset).toBeGreaterThanOrEqual(4 << 20);
      expect(st.offset).toBeLessThan(8 << 20);
      expect(st).toMatchObject({ total: 8 << 20, expected: b.digest });

      const w = await store.writer(ctx, { ref: 'killed', desc: { size: 8 << 20, digest: b.digest } });
      expect((await w.status()).offset).toBe(st.offset);
      expect(w.digest()).toBe(digestOf(b.data.subarray(0, st.offset)));
      await w.write(b.data.subarray(st.offset));
      await w.commit(8 << 20, b.digest);
      expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([b.digest.slice('sha256:'.length)]);
      expect(digestOf(await readFile(join(root, 'blobs', 'sha256', b.digest.slice(7))))).toBe(b.digest);
      expect(await store.listStatuses(ctx)).toEqual([]);
    });
  });
});
