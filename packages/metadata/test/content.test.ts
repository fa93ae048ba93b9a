import { type ContentInfo, type ContentStore, type Context, digestOf, readBlob } from '@berth/api';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';

const A = ns('a');
const B = ns('b');

async function walkAll(store: ContentStore, ctx: Context, filters?: string[]): Promise<ContentInfo[]> {
  const out: ContentInfo[] = [];
  await store.walk(ctx, (i) => void out.push(i), filters);
  return out;
}

describe('MetadataContentStore', () => {
  let f: Fixture;
  let cs: ContentStore;
  beforeEach(() => {
    f = fixture();
    cs = f.db.content!;
  });
  afterEach(() => f.cleanup());

  describe('namespacing', () => {
    it('a namespace sees only what it committed', async () => {
      const d = await put(cs, A, 'hello', { labels: { k: 'v' } });
      const info = await cs.info(A, d);
      expect(info).toMatchObject({ digest: d, size: 5, labels: { k: 'v' } });
      expect(info.createdAt.getTime()).toBe(info.updatedAt.getTime());
      expect((await readBlob(cs, A, { digest: d })).toString()).toBe('hello');
      expect((await walkAll(cs, A)).map((i) => i.digest)).toEqual([d]);

      const e1 = await errorOf(() => cs.info(B, d));
      expect(e1.code).toBe('ERR_NOT_FOUND');
      expect(e1.message).toBe(`content digest ${d}: not found`);
      expect((await errorOf(() => cs.readerAt(B, { digest: d }))).code).toBe('ERR_NOT_FOUND');
      expect((await errorOf(() => cs.update(B, { digest: d, labels: {} }))).code).toBe('ERR_NOT_FOUND');
      expect((await errorOf(() => cs.delete(B, d))).code).toBe('ERR_NOT_FOUND');
      expect(await walkAll(cs, B)).toEqual([]);
    });

    it('a blob read once is no longer readable after delete or collection', async () => {
      const d = await put(cs, A, 'shared bytes');
      await put(cs, B, 'shared bytes', { labels: { 'containerd.io/gc.root': 'x' } });
      expect((await readBlob(cs, A, { digest: d })).toString()).toBe('shared bytes');
      await cs.delete(A, d);
      expect((await errorOf(() => cs.readerAt(A, { digest: d }))).code).toBe('ERR_NOT_FOUND');

      await put(cs, A, 'shared bytes');
      expect((await readBlob(cs, A, { digest: d })).toString()).toBe('shared bytes');
      await f.db.collectGarbage();
      expect((await errorOf(() => cs.readerAt(A, { digest: d }))).code).toBe('ERR_NOT_FOUND');
      expect((await readBlob(cs, B, { digest: d })).toString()).toBe('shared bytes');
    });

    it('every method requires a valid namespace', async () => {
      const d = digestOf('x');
      const calls: (() => Promise<unknown>)[] = [
        () => cs.info({}, d),
        () => cs.update({}, { digest: d, labels: {} }),
        () => cs.walk({}, () => {}),
        () => cs.delete({}, d),
        () => cs.readerAt({}, { digest: d }),
        () => cs.status({}, 'r'),
        () => cs.listStatuses({}),
        () => cs.abort({}, 'r'),
        () => cs.writer({}, { ref: 'r' }),
      ];
      for (const call of calls) {
        const err = await errorOf(call);
        expect(err.code).toBe('ERR_FAILED_PRECONDITION');
        expect(err.message).toBe('namespace is required');
      }
      expect((await errorOf(() => cs.info({ namespace: '../etc' }, d))).code).toBe('ERR_INVALID_ARGUMENT');
    });

    it('rejects malformed digests and empty refs', async () => {
      for (const call of [
        () => cs.info(A, 'sha256:nothex'),
        () => cs.delete(A, 'md5:abc'),
        () => cs.readerAt(A, { digest: 'garbage' }),
        () => cs.writer(A, { ref: 'r', desc: { digest: 'sha256:short' } }),
        () => cs.writer(A, { ref: '' }),
        () => cs.writer(A, { ref: 'r', desc: { size: -1 } }),
      ]) {
        expect((await errorOf(call)).code).toBe('ERR_INVALID_ARGUMENT');
      }
      expect(await cs.listStatuses(A)).toEqual([]);
    });

    it('keeps writer refs apart per namespace in the backing store', async () => {
      const wa = await cs.writer(A, { ref: 'same' });
      const wb = await cs.writer(B, { ref: 'same' });
      await wa.write(Buffer.from('aaa'));
      await wb.write(Buffer.from('b'));
      expect(wa.ref).toBe('same');
      expect([...f.backing.ingests.keys()].sort()).toEqual([
        expect.stringMatching(/^a\/\d+\/same$/),
        expect.stringMatching(/^b\/\d+\/same$/),
      ]);
      expect(await cs.listStatuses(A)).toEqual([expect.objectContaining({ ref: 'same', offset: 3 })]);
      expect(await cs.status(B, 'same')).toMatchObject({ ref: 'same', offset: 1 });
      expect((await wa.status()).ref).toBe('same');

      await wa.close();
      await cs.abort(A, 'same');
      expect(await cs.listStatuses(A)).toEqual([]);
      expect((await errorOf(() => cs.status(A, 'same'))).code).toBe('ERR_NOT_FOUND');
      expect(await cs.status(B, 'same')).toMatchObject({ offset: 1 });
      expect(f.backing.ingests.size).toBe(1);
      await wb.close();
    });

    it('status, abort of an unknown ref are NotFound; listStatuses filters on ref', async () => {
      const e = await errorOf(() => cs.status(A, 'nope'));
      expect(e.code).toBe('ERR_NOT_FOUND');
      expect(e.message).toContain('nope');
      expect((await errorOf(() => cs.abort(A, 'nope'))).code).toBe('ERR_NOT_FOUND');
      for (const ref of ['layer-1', 'layer-2', 'config']) await (await cs.writer(A, { ref })).close();
      expect((await cs.listStatuses(A, ['ref~=^layer-'])).map((s) => s.ref)).toEqual(['layer-1', 'layer-2']);
      expect((await cs.listStatuses(A, ['ref==config'])).map((s) => s.ref)).toEqual(['config']);
      expect((await errorOf(() => cs.listStatuses(A, ['ref=='])))?.code).toBe('ERR_INVALID_ARGUMENT');
    });

    it('resumes an ingest under the same ref', async () => {
      const data = Buffer.from('resumable content');
      const d = digestOf(data);
      let w = await cs.writer(A, { ref: 'resume', desc: { size: data.length } });
      await w.write(data.subarray(0, 5));
      await w.close();
      w = await cs.writer(A, { ref: 'resume', desc: { size: data.length, digest: d } });
      const st = await w.status();
      expect(st.offset).toBe(5);
      await w.write(data.subarray(st.offset));
      await w.commit(data.length, d);
      await w.close();
      expect((await cs.info(A, d)).size).toBe(data.length);
      expect(await cs.listStatuses(A)).toEqual([]);
    });

    it('a commit checks size and digest (including the descriptor given at open)', async () => {
      const w = await cs.writer(A, { ref: 'r', desc: { digest: digestOf('right') } });
      await w.write(Buffer.from('wrong'));
      const e1 = await errorOf(() => w.commit(4));
      expect(e1.code).toBe('ERR_FAILED_PRECONDITION');
      expect(e1.message).toContain('size');
      const e2 = await errorOf(() => w.commit(5));
      expect(e2.code).toBe('ERR_FAILED_PRECONDITION');
      // Nothing recorded: the ingest is still there to fix.
      expect(await walkAll(cs, A)).toEqual([]);
      await w.truncate(0);
      await w.write(Buffer.from('right'));
      await w.commit(5);
      await w.close();
      expect((await cs.info(A, digestOf('right'))).size).toBe(5);
    });

    it('a second commit of the same bytes in one namespace is AlreadyExists and drops the ingest', async () => {
      const d = await put(cs, A, 'twice', { ref: 'one' });
      const w = await cs.writer(A, { ref: 'two' });
      await w.write(Buffer.from('twice'));
      const err = await errorOf(() => w.commit(5));
      expect(err.code).toBe('ERR_ALREADY_EXISTS');
      expect(err.message).toBe(`content ${d}: already exists`);
      await w.close();
      expect(await cs.listStatuses(A)).toEqual([]);
    });
  });

  describe('sharing between namespaces', () => {
    it('writer() for a digest this namespace has is AlreadyExists', async () => {
      const d = await put(cs, A, 'mine');
      const err = await errorOf(() => cs.writer(A, { ref: 'again', desc: { digest: d } }));
      expect(err.code).toBe('ERR_ALREADY_EXISTS');
      expect(err.message).toBe(`content ${d}: already exists`);
      expect(await cs.listStatuses(A)).toEqual([]);
    });

    it('shared policy: another namespace commits a known blob without sending bytes', async () => {
      const d = await put(cs, A, 'shared bytes', { labels: { from: 'a' } });
      const before = f.backing.calls.length;
      const w = await cs.writer(B, { ref: 'pull', desc: { digest: d, size: 12 } });
      expect(await w.status()).toMatchObject({ ref: 'pull', offset: 12, total: 12, expected: d });
      expect(await cs.status(B, 'pull')).toMatchObject({ ref: 'pull', offset: 12, expected: d });
      expect(w.digest()).toBe(d);
      await w.commit(12, d, { labels: { from: 'b' } });
      await w.close();
      expect(f.backing.calls.slice(before).filter((c) => c.startsWith('writer'))).toEqual([]);
      // Each namespace keeps its own record and labels over one backing blob.
      expect((await cs.info(B, d)).labels).toEqual({ from: 'b' });
      expect((await cs.info(A, d)).labels).toEqual({ from: 'a' });
      expect(f.backing.blobs.size).toBe(1);
      expect((await readBlob(cs, B, { digest: d })).toString()).toBe('shared bytes');
    });

    it('shared policy: a blob no namespace holds any more is written afresh', async () => {
      const d = await put(cs, A, 'deleted');
      await cs.delete(A, d);
      expect(f.backing.blobs.has(d)).toBe(true); // GC has not run
      const w = await cs.writer(B, { ref: 'r', desc: { digest: d, size: 7 } });
      expect(await w.status()).toMatchObject({ offset: 0, total: 7, expected: d });
      expect(await cs.status(B, 'r')).toMatchObject({ offset: 0, total: 7, expected: d });
      await w.write(Buffer.from('deleted'));
      await w.commit(7, d);
      await w.close();
      expect((await readBlob(cs, B, { digest: d })).toString()).toBe('deleted');
    });

    it('a writer is done after commit', async () => {
      const d = await put(cs, A, 'shared once');
      const w = await cs.writer(B, { ref: 'r', desc: { digest: d } });
      await w.commit(0);
      expect((await errorOf(() => w.write(Buffer.from('x')))).code).toBe('ERR_FAILED_PRECONDITION');
      expect((await errorOf(() => w.commit(0))).code).toBe('ERR_FAILED_PRECONDITION');
      await w.close();
    });

    it('an aborted ingest cannot be committed by its open writer', async () => {
      const w = await cs.writer(A, { ref: 'r' });
      await w.write(Buffer.from('abandoned'));
      await cs.abort(A, 'r');
      const err = await errorOf(() => w.commit(9));
      expect(err.code).toBe('ERR_NOT_FOUND');
      await w.close();
      expect(await walkAll(cs, A)).toEqual([]);
    });

    it('shared policy: a size that does not match the blob means a normal write', async () => {
      const d = await put(cs, A, 'sized');
      const w = await cs.writer(B, { ref: 'r', desc: { digest: d, size: 99 } });
      expect((await w.status()).offset).toBe(0);
      await w.close();
    });

    it('shared policy: writing after the shared blob appends; truncate(0) starts over', async () => {
      const d = await put(cs, A, 'abc');
      const w = await cs.writer(B, { ref: 'r', desc: { digest: d } });
      await w.write(Buffer.from('def'));
      expect((await w.status()).offset).toBe(6);
      expect((await errorOf(() => w.commit(6, d))).code).toBe('ERR_FAILED_PRECONDITION');
      await w.truncate(0);
      await w.write(Buffer.from('abc'));
      await w.commit(3, d);
      await w.close();
      expect((await cs.info(B, d)).size).toBe(3);
    });

    it('shared policy: a commit with the wrong size or digest fails', async () => {
      const d = await put(cs, A, 'abc');
      const w = await cs.writer(B, { ref: 'r', desc: { digest: d } });
      expect((await errorOf(() => w.commit(4))).code).toBe('ERR_FAILED_PRECONDITION');
      expect((await errorOf(() => w.commit(3, digestOf('other')))).code).toBe('ERR_FAILED_PRECONDITION');
      await w.close();
      expect((await errorOf(() => cs.info(B, d))).code).toBe('ERR_NOT_FOUND');
    });

    it('isolated policy: the other namespace must write the blob, then commit succeeds', async () => {
      const g = fixture({ contentSharing: 'isolated' });
      try {
        const store = g.db.content!;
        const d = await put(store, A, 'private');
        const w = await store.writer(B, { ref: 'r', desc: { digest: d } });
        expect((await w.status()).offset).toBe(0);
        await w.write(Buffer.from('private'));
        await w.commit(7, d);
        await w.close();
        expect((await store.info(B, d)).size).toBe(7);
        expect(g.backing.blobs.size).toBe(1);
      } finally {
        await g.cleanup();
      }
    });

    it('delete removes the blob from one namespace only', async () => {
      const d = await put(cs, A, 'both');
      await put(cs, B, 'both');
      await cs.delete(A, d);
      expect((await errorOf(() => cs.info(A, d))).code).toBe('ERR_NOT_FOUND');
      expect((await errorOf(() => cs.delete(A, d))).code).toBe('ERR_NOT_FOUND');
      expect((await cs.info(B, d)).size).toBe(4);
      expect(f.backing.blobs.has(d)).toBe(true);
    });
  });

  describe('labels and walk', () => {
    it('updates labels by field path', async () => {
      const d = await put(cs, A, 'labelled', { labels: { a: '1', b: '2' } });
      const created = (await cs.info(A, d)).createdAt;
      let info = await cs.update(A, { digest: d, labels: { a: 'one', c: '3' } }, ['labels.a']);
      expect(info.labels).toEqual({ a: 'one', b: '2' });
      expect(info.createdAt).toEqual(created);
      info = await cs.update(A, { digest: d, labels: {} }, ['labels.b']);
      expect(info.labels).toEqual({ a: 'one' });
      info = await cs.update(A, { digest: d, labels: { z: '26' } }, ['labels']);
      expect(info.labels).toEqual({ z: '26' });
      info = await cs.update(A, { digest: d, labels: { y: '25' } });
      expect(info.labels).toEqual({ y: '25' });
      expect((await cs.info(A, d)).labels).toEqual({ y: '25' });
      expect(info.updatedAt.getTime()).toBeGreaterThanOrEqual(created.getTime());
    });

    it('rejects unknown field paths and bad labels, changing nothing', async () => {
      const d = await put(cs, A, 'strict', { labels: { keep: 'me' } });
      const e1 = await errorOf(() => cs.update(A, { digest: d, labels: {} }, ['size']));
      expect(e1.code).toBe('ERR_INVALID_ARGUMENT');
      expect(e1.message).toContain('"size"');
      const e2 = await errorOf(() =>
        cs.update(A, { digest: d, labels: { big: 'x'.repeat(4100) } }, ['labels.big']),
      );
      expect(e2.code).toBe('ERR_INVALID_ARGUMENT');
      expect((await cs.info(A, d)).labels).toEqual({ keep: 'me' });
      const e3 = await errorOf(() => put(cs, A, 'bad commit labels', { labels: { '': 'x' } }));
      expect(e3.code).toBe('ERR_INVALID_ARGUMENT');
      expect((await walkAll(cs, A)).length).toBe(1);
    });

    it('walks with filters on digest, size and labels', async () => {
      const d1 = await put(cs, A, 'one', { labels: { kind: 'layer', 'x.y': 'dotted' } });
      const d2 = await put(cs, A, 'three', { labels: { kind: 'config' } });
      const d3 = await put(cs, A, 'seven');
      const digests = async (...filters: string[]) =>
        (await walkAll(cs, A, filters)).map((i) => i.digest).sort();
      expect(await digests()).toEqual([d1, d2, d3].sort());
      expect(await digests(`digest==${d2}`)).toEqual([d2]);
      expect(await digests('size==5')).toEqual([d2, d3].sort());
      expect(await digests('labels.kind==layer')).toEqual([d1]);
      expect(await digests('labels.kind')).toEqual([d1, d2].sort());
      expect(await digests('labels."x.y"==dotted')).toEqual([d1]);
      expect(await digests('labels.kind==layer', 'labels.kind==config')).toEqual([d1, d2].sort());
      expect(await digests('size==5,labels.kind==config')).toEqual([d2]);
      expect((await errorOf(() => digests('labels.kind=~x'))).code).toBe('ERR_INVALID_ARGUMENT');
    });

    it('walk stops at the first error of the callback', async () => {
      await put(cs, A, 'w1');
      await put(cs, A, 'w2');
      let calls = 0;
      const err = await errorOf(() =>
        cs.walk(A, () => {
          calls++;
          throw new Error('stop');
        }),
      );
      expect(err.message).toBe('stop');
      expect(calls).toBe(1);
    });
  });

  describe('leases', () => {
    it('a write and commit under a lease put the ingest, then the content, on the lease', async () => {
      await f.db.leases.create(A, { id: 'l' });
      const ctx = ns('a', 'l');
      const w = await cs.writer(ctx, { ref: 'leased' });
      expect(await f.db.leases.listResources(A, 'l')).toEqual([{ type: 'ingests', id: 'leased' }]);
      await w.write(Buffer.from('leased'));
      await w.commit(6);
      await w.close();
      expect(await f.db.leases.listResources(A, 'l')).toEqual([{ type: 'content', id: digestOf('leased') }]);
    });

    it('writer() for existing content still adds it to the lease before AlreadyExists', async () => {
      const d = await put(cs, A, 'present');
      await f.db.leases.create(A, { id: 'l' });
      const err = await errorOf(() => cs.writer(ns('a', 'l'), { ref: 'x', desc: { digest: d } }));
      expect(err.code).toBe('ERR_ALREADY_EXISTS');
      expect(await f.db.leases.listResources(A, 'l')).toEqual([{ type: 'content', id: d }]);
    });

    it('a missing lease is NotFound and leaves no ingest behind', async () => {
      const err = await errorOf(() => cs.writer(ns('a', 'ghost'), { ref: 'r' }));
      expect(err.code).toBe('ERR_NOT_FOUND');
      expect(err.message).toBe('lease "ghost": not found');
      expect(await cs.listStatuses(A)).toEqual([]);
      expect(f.backing.ingests.size).toBe(0);
    });

    it('delete and abort under a lease take the resource off it', async () => {
      await f.db.leases.create(A, { id: 'l' });
      const ctx = ns('a', 'l');
      const d = await put(cs, ctx, 'to delete');
      await (await cs.writer(ctx, { ref: 'to-abort' })).close();
      expect(await f.db.leases.listResources(A, 'l')).toHaveLength(2);
      await cs.delete(ctx, d);
      await cs.abort(ctx, 'to-abort');
      expect(await f.db.leases.listResources(A, 'l')).toEqual([]);
      expect(f.backing.ingests.size).toBe(0);
    });
  });

  describe('atomicity', () => {
    it('a backing writer that fails leaves no ingest record', async () => {
      await f.db.leases.create(A, { id: 'l' });
      f.backing.failNextWriter = new Error('backing store is full');
      const err = await errorOf(() => cs.writer(ns('a', 'l'), { ref: 'doomed' }));
      expect(err.message).toBe('backing store is full');
      expect(await cs.listStatuses(A)).toEqual([]);
      expect(await f.db.leases.listResources(A, 'l')).toEqual([]);
      // And the ref is usable afterwards.
      await put(cs, A, 'fine', { ref: 'doomed' });
    });

    it('a commit whose lease vanished records nothing and keeps the ingest', async () => {
      await f.db.leases.create(A, { id: 'l' });
      const w = await cs.writer(ns('a', 'l'), { ref: 'orphan' });
      await w.write(Buffer.from('orphaned'));
      await f.db.leases.delete(A, 'l');
      const err = await errorOf(() => w.commit(8));
      expect(err.code).toBe('ERR_NOT_FOUND');
      expect((await errorOf(() => cs.info(A, digestOf('orphaned')))).code).toBe('ERR_NOT_FOUND');
      expect((await cs.listStatuses(A)).map((s) => s.ref)).toEqual(['orphan']);
      await w.close();
    });
  });
});
