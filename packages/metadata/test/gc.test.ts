import {
  type CommitOptions,
  type ContentStore,
  type Context,
  type Digest,
  digestOf,
  LEASE_EXPIRE_LABEL,
  type Writer,
  type WriterOptions,
} from '@berth/api';
import { GC_ROOT_LABEL, type GCReport, labelReferences } from '../src';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';

const A = ns('a');
const B = ns('b');
const ROOT = { [GC_ROOT_LABEL]: 'true' };

describe('garbage collection', () => {
  let f: Fixture;
  let cs: ContentStore;
  beforeEach(() => {
    f = fixture();
    cs = f.db.content!;
  });
  afterEach(() => f.cleanup());

  const has = async (ctx: Context, d: Digest) =>
    cs.info(ctx, d).then(
      () => true,
      () => false,
    );

  it('removes unreferenced content and frees its blob; keeps gc.root content', async () => {
    const kept = await put(cs, A, 'root', { labels: ROOT });
    const gone = await put(cs, A, 'garbage');
    const report = await f.db.collectGarbage();
    expect(await has(A, kept)).toBe(true);
    expect(await has(A, gone)).toBe(false);
    expect(f.backing.blobs.has(kept)).toBe(true);
    expect(f.backing.blobs.has(gone)).toBe(false);
    expect(report.removed).toEqual([
      { type: 'content', namespace: 'a', id: gone },
      { type: 'content', id: gone },
    ]);
    expect(report.bytes).toBe('garbage'.length);
    expect(report.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('follows gc.ref.content labels from marked content, in the same namespace only', async () => {
    const leaf1 = await put(cs, A, 'leaf via plain key');
    const leaf2 = await put(cs, A, 'leaf via dotted key');
    const leaf3 = await put(cs, A, 'leaf via slash key');
    const notARef = await put(cs, A, 'leaf via a look-alike key');
    const mid = await put(cs, A, 'middle', {
      labels: { 'containerd.io/gc.ref.content': leaf1, 'containerd.io/gc.ref.content.m.0': leaf2 },
    });
    await put(cs, A, 'top', {
      labels: {
        ...ROOT,
        'containerd.io/gc.ref.content.config': mid,
        'containerd.io/gc.ref.content/x': leaf3,
        'containerd.io/gc.ref.contentfoo': notARef,
      },
    });
    // B has a copy of leaf1, referenced only from A: B's record is not kept by A's label.
    await put(cs, B, 'leaf via plain key');

    await f.db.collectGarbage();
    for (const d of [mid, leaf1, leaf2, leaf3]) expect(await has(A, d)).toBe(true);
    expect(await has(A, notARef)).toBe(false);
    expect(await has(B, leaf1)).toBe(false);
    expect(f.backing.blobs.has(leaf1)).toBe(true);
    expect(f.backing.blobs.has(notARef)).toBe(false);
  });

  it('collects a chain once its root label is removed', async () => {
    const leaf = await put(cs, A, 'leaf');
    const top = await put(cs, A, 'top', { labels: { ...ROOT, 'containerd.io/gc.ref.content.l': leaf } });
    await f.db.collectGarbage();
    expect(await has(A, leaf)).toBe(true);
    await cs.update(A, { digest: top, labels: {} }, [`labels.${GC_ROOT_LABEL}`]);
    const report = await f.db.collectGarbage();
    expect(
      report.removed
        .filter((r) => r.namespace)
        .map((r) => r.id)
        .sort(),
    ).toEqual([leaf, top].sort());
    expect(f.backing.blobs.size).toBe(0);
  });

  it('a lease protects what it holds (and what that references) until it goes', async () => {
    await f.db.leases.create(A, { id: 'pull' });
    const leaf = await put(cs, A, 'layer');
    await put(cs, ns('a', 'pull'), 'manifest', { labels: { 'containerd.io/gc.ref.content.l.0': leaf } });
    await f.db.collectGarbage();
    expect(await has(A, leaf)).toBe(true);
    await f.db.leases.delete(A, 'pull');
    await f.db.collectGarbage();
    expect(await has(A, leaf)).toBe(false);
    expect(f.backing.blobs.size).toBe(0);
  });

  it('a lease resource added by hand protects content too; an expired lease does not', async () => {
    const d = await put(cs, A, 'hand leased');
    const past = new Date(Date.now() - 1000).toISOString();
    await f.db.leases.create(A, { id: 'live' });
    await f.db.leases.create(A, { id: 'dead', labels: { [LEASE_EXPIRE_LABEL]: past } });
    await f.db.leases.addResource(A, 'live', { type: 'content', id: d });
    const d2 = await put(cs, A, 'dead leased');
    await f.db.leases.addResource(A, 'dead', { type: 'content', id: d2 });
    const report = await f.db.collectGarbage();
    expect(await has(A, d)).toBe(true);
    expect(await has(A, d2)).toBe(false);
    expect(report.removed).toEqual(
      expect.arrayContaining([
        { type: 'leases', namespace: 'a', id: 'dead' },
        { type: 'content', namespace: 'a', id: d2 },
        { type: 'content', id: d2 },
      ]),
    );
  });

  it('frees a backing blob only when no namespace references it any more', async () => {
    const d = await put(cs, A, 'popular', { labels: ROOT });
    await put(cs, B, 'popular', { labels: ROOT });
    await cs.delete(A, d);
    await f.db.collectGarbage();
    expect(f.backing.blobs.has(d)).toBe(true);
    expect((await cs.info(B, d)).size).toBe(7);
    await cs.delete(B, d);
    const report = await f.db.collectGarbage();
    expect(f.backing.blobs.has(d)).toBe(false);
    expect(report.removed).toEqual([{ type: 'content', id: d }]);
    expect(report.bytes).toBe(7);
  });

  it('keeps unexpired ingests and the shared blob an ingest expects', async () => {
    const d = await put(cs, A, 'shared');
    const w = await cs.writer(B, { ref: 'pending', desc: { digest: d } });
    const partial = await cs.writer(A, { ref: 'partial' });
    await partial.write(Buffer.from('half'));
    await partial.close();
    await cs.delete(A, d);
    const report = await f.db.collectGarbage();
    expect(report.removed).toEqual([]);
    expect(f.backing.blobs.has(d)).toBe(true);
    expect((await cs.status(A, 'partial')).offset).toBe(4);
    await w.commit(6, d);
    await w.close();
    expect((await cs.info(B, d)).size).toBe(6);
  });

  it('removes expired ingests and aborts their backing ingests', async () => {
    const g = fixture({ ingestExpiryMs: -1 });
    try {
      const w = await g.db.content!.writer(A, { ref: 'stale' });
      await w.write(Buffer.from('stale'));
      await w.close();
      const [backingRef] = [...g.backing.ingests.keys()];
      const report = await g.db.collectGarbage();
      expect(report.removed).toEqual([
        { type: 'ingests', namespace: 'a', id: 'stale' },
        { type: 'ingests', id: backingRef },
      ]);
      expect(g.backing.ingests.size).toBe(0);
      expect(await g.db.content!.listStatuses(A)).toEqual([]);
    } finally {
      await g.cleanup();
    }
  });

  it('a leased ingest lives as long as its lease', async () => {
    await f.db.leases.create(A, { id: 'l' });
    await (await cs.writer(ns('a', 'l'), { ref: 'held' })).close();
    await f.db.collectGarbage();
    expect((await cs.listStatuses(A)).map((s) => s.ref)).toEqual(['held']);
    await f.db.leases.delete(A, 'l', { sync: true });
    expect(await cs.listStatuses(A)).toEqual([]);
    expect(f.backing.ingests.size).toBe(0);
  });

  it('frees blobs and aborts ingests in the backing store that no record knows', async () => {
    const w = await f.backing.writer({}, { ref: 'stray-ingest' });
    await w.write(Buffer.from('stray'));
    await w.close();
    const w2 = await f.backing.writer({}, { ref: 'stray-blob' });
    await w2.write(Buffer.from('orphan blob'));
    await w2.commit(11);
    const report = await f.db.collectGarbage();
    expect(f.backing.blobs.size).toBe(0);
    expect(f.backing.ingests.size).toBe(0);
    expect(report.removed).toEqual(
      expect.arrayContaining([
        { type: 'content', id: digestOf('orphan blob') },
        { type: 'ingests', id: 'stray-ingest' },
      ]),
    );
  });

  it('plugs in new resource kinds: their roots keep content, their sweep runs', async () => {
    const d = await put(cs, A, 'widget target');
    const widgets = new Map([['a\0w', d]]);
    const removed: string[] = [];
    f.db.registerResourceKind({
      type: 'widgets',
      roots: () =>
        [...widgets.keys()].map((k) => ({ type: 'widgets', namespace: 'a', id: k.split('\0')[1]! })),
      references: (n) => [
        { type: 'content', namespace: n.namespace, id: widgets.get(`${n.namespace}\0${n.id}`)! },
      ],
      all: () => [
        { type: 'widgets', namespace: 'a', id: 'w' },
        { type: 'widgets', namespace: 'a', id: 'stale' },
      ],
      remove: (n) => void removed.push(n.id),
    });
    const report = await f.db.collectGarbage();
    expect(await has(A, d)).toBe(true);
    expect(removed).toEqual(['stale']);
    expect(report.removed).toEqual([{ type: 'widgets', namespace: 'a', id: 'stale' }]);
  });

  it('labelReferences reads content and snapshot references', () => {
    expect(
      labelReferences('n', [
        ['containerd.io/gc.ref.content', 'sha256:1'],
        ['containerd.io/gc.ref.content.config', 'sha256:2'],
        ['containerd.io/gc.ref.contentx', 'sha256:3'],
        ['containerd.io/gc.ref.snapshot.overlayfs', 'key1'],
        ['containerd.io/gc.ref.snapshot.native/1', 'key2'],
        ['containerd.io/gc.ref.content.empty', ''],
        ['unrelated', 'x'],
      ]),
    ).toEqual([
      { type: 'content', namespace: 'n', id: 'sha256:1' },
      { type: 'content', namespace: 'n', id: 'sha256:2' },
      { type: 'snapshots/overlayfs', namespace: 'n', id: 'key1' },
      { type: 'snapshots/native', namespace: 'n', id: 'key2' },
    ]);
  });

  it('a commit in flight finishes before GC sweeps, so its blob is never freed under it', async () => {
    // A backing store whose commit pauses after the blob is stored, before the record is written.
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let paused!: () => void;
    const reached = new Promise<void>((r) => {
      paused = r;
    });
    const backing = f.backing;
    const slow: ContentStore = Object.create(backing);
    slow.writer = async (ctx: Context, opts: WriterOptions): Promise<Writer> => {
      const w = await backing.writer(ctx, opts);
      return Object.assign(Object.create(w), {
        ref: w.ref,
        commit: async (size: number, expected?: Digest, o?: CommitOptions) => {
          await w.commit(size, expected, o);
          paused();
          await gate;
        },
      });
    };
    const g = f.open({ content: slow });
    const store = g.content!;
    const committing = put(store, A, 'in flight', { labels: ROOT });
    await reached;
    let report: GCReport | undefined;
    const collecting = g.collectGarbage().then((r) => {
      report = r;
    });
    await new Promise((r) => setImmediate(r));
    expect(report).toBeUndefined();
    release();
    const d = await committing;
    await collecting;
    expect(report!.removed).toEqual([]);
    expect(backing.blobs.has(d)).toBe(true);
    expect((await store.info(A, d)).size).toBe(9);
  });

  describe('mutation reports (what the gc.v1 scheduler hears)', () => {
    const listen = () => {
      const heard: boolean[] = [];
      const stop = f.db.onMutation((dirty) => heard.push(dirty));
      return { heard, stop };
    };

    it('reports every write clean until something is deleted: namespaces and ingests are no deletion', async () => {
      const { heard } = listen();
      await f.db.namespaces.create(A, 'x');
      await f.db.namespaces.delete(A, 'x');
      await put(cs, A, 'ingested, no lease');
      expect(heard.length).toBeGreaterThanOrEqual(3);
      expect(heard.every((dirty) => !dirty)).toBe(true);
      expect(f.db.dirtyCount).toBe(0);
    });

    it('a deletion reports dirty itself, later writes too, until a collection clears it', async () => {
      const d = await put(cs, A, 'x', { labels: ROOT });
      const { heard } = listen();
      await cs.delete(A, d);
      expect(heard).toEqual([true]);
      await f.db.namespaces.create(A, 'y');
      expect(heard).toEqual([true, true]);
      // The collector's own write is not reported.
      await f.db.collectGarbage();
      expect(heard).toEqual([true, true]);
      expect(f.backing.blobs.has(d)).toBe(false);
      await f.db.namespaces.create(A, 'z');
      expect(heard).toEqual([true, true, false]);
    });

    it.each([
      ['a lease delete', async () => f.db.leases.delete(A, (await f.db.leases.create(A, { id: 'l' })).id)],
      [
        "a lease's resource delete",
        async () => {
          await f.db.leases.create(A, { id: 'l' });
          await f.db.leases.deleteResource(A, 'l', { type: 'content', id: digestOf('x') });
        },
      ],
      [
        'an image delete',
        async () => {
          const target = {
            mediaType: 'application/vnd.oci.image.index.v1+json',
            digest: digestOf('i'),
            size: 1,
          };
          await f.db.images.create(A, { name: 'example.com/i:1', target, labels: {} });
          await f.db.images.delete(A, 'example.com/i:1');
        },
      ],
    ])('%s is a deletion', async (_what, act) => {
      const { heard } = listen();
      await act();
      expect(heard.at(-1)).toBe(true);
      expect(f.db.dirtyCount).toBe(1);
    });

    it('a failed write reports nothing; an unsubscribed listener hears nothing', async () => {
      const { heard, stop } = listen();
      expect((await errorOf(() => cs.delete(A, digestOf('missing')))).code).toBe('ERR_NOT_FOUND');
      expect(heard).toEqual([]);
      expect(f.db.dirtyCount).toBe(0);
      stop();
      await f.db.namespaces.create(A, 'quiet');
      expect(heard).toEqual([]);
    });

    it('close waits for a running collection, then refuses new ones', async () => {
      const g = f.open();
      const d = await put(g.content!, A, 'x');
      const running = g.collectGarbage();
      await g.close();
      expect((await running).removed).toContainEqual({ type: 'content', namespace: 'a', id: d });
      expect((await errorOf(() => g.collectGarbage())).code).toBe('ERR_FAILED_PRECONDITION');
    });
  });
});
