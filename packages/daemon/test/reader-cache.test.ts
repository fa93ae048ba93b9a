import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentStore, ReaderAt } from '@berth/api';
import { FileReaderAt, ReaderCacheStore } from '@berth/daemon';

/** A backing store whose readerAt hands out counted fakes; only what the cache uses. */
function fakeStore() {
  const opened: string[] = [];
  const closed: string[] = [];
  const deleted: string[] = [];
  const store = {
    readerAt: async (_ctx: unknown, desc: { digest: string }): Promise<ReaderAt> => {
      if (desc.digest === 'missing')
        throw Object.assign(new Error('content missing: not found'), { code: 'ERR_NOT_FOUND' });
      opened.push(desc.digest);
      return {
        size: 10,
        readAt: async (off: number, len: number) => Buffer.from(`${desc.digest}@${off}+${len}`),
        close: async () => void closed.push(desc.digest),
      };
    },
    delete: async (_ctx: unknown, digest: string) => void deleted.push(digest),
  } as unknown as ContentStore;
  return { store, opened, closed, deleted };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('ReaderCacheStore', () => {
  test('shares one open blob between readers and keeps it open while idle', async () => {
    const f = fakeStore();
    const cache = new ReaderCacheStore(f.store, { idleMs: 60_000 });
    const [a, b] = await Promise.all([
      cache.readerAt({}, { digest: 'd1' }),
      cache.readerAt({}, { digest: 'd1' }),
    ]);
    expect(f.opened).toEqual(['d1']);
    expect((await a.readAt(1, 2)).toString()).toBe('d1@1+2');
    await a.close();
    await b.close();
    await b.close(); // twice is harmless
    const c = await cache.readerAt({}, { digest: 'd1' });
    expect(f.opened).toEqual(['d1']);
    expect(f.closed).toEqual([]);
    await c.close();
    await cache.close();
    await tick();
    expect(f.closed).toEqual(['d1']);
  });

  test('closes a blob after it has been idle', async () => {
    const f = fakeStore();
    const cache = new ReaderCacheStore(f.store, { idleMs: 1 });
    await (await cache.readerAt({}, { digest: 'd1' })).close();
    await tick();
    expect(f.closed).toEqual(['d1']);
    expect(cache.openCount).toBe(0);
    await cache.readerAt({}, { digest: 'd1' });
    expect(f.opened).toEqual(['d1', 'd1']);
  });

  test('delete retires the blob: a reader still open keeps working, the next one reopens', async () => {
    const f = fakeStore();
    const cache = new ReaderCacheStore(f.store, { idleMs: 60_000 });
    const r = await cache.readerAt({}, { digest: 'd1' });
    await cache.delete({}, 'd1');
    expect(f.deleted).toEqual(['d1']);
    expect(f.closed).toEqual([]);
    expect((await r.readAt(0, 1)).toString()).toBe('d1@0+1');
    await r.close();
    expect(f.closed).toEqual(['d1']);
    await cache.readerAt({}, { digest: 'd1' });
    expect(f.opened).toEqual(['d1', 'd1']);
  });

  test('keeps at most maxOpen idle blobs, closing the least recently used', async () => {
    const f = fakeStore();
    const cache = new ReaderCacheStore(f.store, { maxOpen: 2, idleMs: 60_000 });
    for (const d of ['a', 'b', 'a', 'c']) await (await cache.readerAt({}, { digest: d })).close();
    await tick();
    expect(f.closed).toEqual(['b']);
    expect(cache.openCount).toBe(2);
  });

  test('an open failure is not cached', async () => {
    const f = fakeStore();
    const cache = new ReaderCacheStore(f.store);
    await expect(cache.readerAt({}, { digest: 'missing' })).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    await tick();
    expect(cache.openCount).toBe(0);
  });
});

describe('FileReaderAt', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-fra-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('reads ranges small (synchronously) and large, short at the end, empty past it', async () => {
    const data = Buffer.alloc(600 << 10);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    writeFileSync(join(dir, 'blob'), data);
    const ra = FileReaderAt.open(join(dir, 'blob'), 'sha256:x');
    expect(ra.size).toBe(data.length);
    expect((await ra.readAt(10, 100)).equals(data.subarray(10, 110))).toBe(true);
    expect((await ra.readAt(1, 500 << 10)).equals(data.subarray(1, 1 + (500 << 10)))).toBe(true);
    expect((await ra.readAt(data.length - 3, 10)).equals(data.subarray(-3))).toBe(true);
    expect((await ra.readAt(data.length + 5, 10)).length).toBe(0);
    await expect(ra.readAt(-1, 1)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await ra.close();
    await expect(ra.readAt(0, 1)).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
  });

  test('a missing blob is NotFound naming the digest', () => {
    expect(() => FileReaderAt.open(join(dir, 'nope'), 'sha256:abc')).toThrow('content sha256:abc: not found');
  });
});
