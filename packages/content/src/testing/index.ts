/**
 * The ContentStore conformance suite. Any content store — the local store, the metadata
 * layer's namespaced view, a gRPC client talking to the daemon — runs the same cases:
 *
 *   runContentStoreSuite('local', async () => ({ store, ctx, cleanup }));
 *
 * It assumes nothing about where bytes live, and nothing about what else is in the store:
 * content is random, refs and labels carry a per-test run id, and listings are filtered to
 * them, so a factory may hand out one shared daemon. Errors are checked by `err.code`
 * (e.g. 'ERR_UNAVAILABLE'), which survives the trip through gRPC status codes.
 *
 * Contract details the cases pin down, beyond the interface comments:
 * - a failed size/digest check at commit leaves the ingest in place (resumable, abortable);
 * - a commit that finds the blob present is AlreadyExists and the ref starts afresh after;
 * - reading at or past the end of a blob is an empty read, not an error;
 * - times are checked to within TIME_SLACK_MS of the client's clock.
 */

import { randomBytes } from 'node:crypto';
import {
  type ContentInfo,
  type ContentStore,
  type Context,
  type Digest,
  digestOf,
  type IngestStatus,
  type Labels,
  readBlob,
  type Writer,
  type WriterOptions,
} from '@berth/api';
import { afterEach, beforeEach, describe, expect, it as jestIt } from '@jest/globals';

export interface ContentStoreFixture {
  store: ContentStore;
  ctx: Context;
  cleanup(): Promise<void>;
}

export type ContentStoreFactory = () => Promise<ContentStoreFixture>;

/** How far a store's clock (another process, a coarse file time) may stray from ours. */
export const TIME_SLACK_MS = 50;

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const MALFORMED = [
  'sha256:xyz',
  'sha256',
  'md5:d41d8cd98f00b204e9800998ecf8427e',
  `sha256:${'A'.repeat(64)}`,
];

interface Blob {
  data: Buffer;
  digest: Digest;
}

function blob(size: number): Blob {
  const data = randomBytes(size);
  return { data, digest: digestOf(data) };
}

async function caught(p: Promise<unknown>): Promise<{ code?: string; message: string } | undefined> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code?: string }).code, message: String((e as Error)?.message ?? e) };
  }
  return undefined;
}

/** Expects p to reject with a typed error of `code` whose message mentions each of `mentions`. */
async function expectCode(p: Promise<unknown>, code: string, ...mentions: string[]): Promise<void> {
  const err = await caught(p);
  expect(err).toMatchObject({ code });
  for (const m of mentions) expect(err!.message).toContain(m);
}

async function writeAll(w: Writer, data: Buffer, chunk = 1 << 20): Promise<void> {
  for (let i = 0; i < data.length; i += chunk) await w.write(data.subarray(i, i + chunk));
}

function expectTimeWithin(actual: Date, before: number, after: number): void {
  expect(actual).toBeInstanceOf(Date);
  expect(actual.getTime()).toBeGreaterThanOrEqual(before - TIME_SLACK_MS);
  expect(actual.getTime()).toBeLessThanOrEqual(after + TIME_SLACK_MS);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ContentSuiteOptions {
  /**
   * Titles of cases where the store is known to answer otherwise (the template title for an
   * `it.each`): registered with `it.failing`, so they pass while the store still differs and
   * turn red the day it conforms. A title that names no case is an error, so the list cannot
   * outlive what it excuses.
   */
  knownDifferences?: readonly string[];
}

type ItFn = typeof jestIt;

/** `it` with the known differences registered as `it.failing`; `check()` throws for a title no case used. */
function knownDifferencesIt(known: readonly string[]): { it: ItFn; check(): void } {
  const used = new Set<string>();
  const isKnown = (title: string): boolean => {
    if (!known.includes(title)) return false;
    used.add(title);
    return true;
  };
  const it = Object.assign(
    (title: string, fn?: Parameters<ItFn>[1], timeout?: number) =>
      isKnown(title) ? jestIt.failing(title, fn as never, timeout) : jestIt(title, fn as never, timeout),
    jestIt,
    {
      each: (table: readonly unknown[]) => (title: string, fn: (...args: any[]) => any, timeout?: number) =>
        isKnown(title)
          ? jestIt.failing.each(table as any[])(title, fn, timeout)
          : jestIt.each(table as any[])(title, fn, timeout),
    },
  ) as unknown as ItFn;
  return {
    it,
    check: () => {
      const unused = known.filter((k) => !used.has(k));
      if (unused.length > 0)
        throw new Error(`known differences name no case of the suite: ${unused.join('; ')}`);
    },
  };
}

export function runContentStoreSuite(
  name: string,
  factory: ContentStoreFactory,
  opts: ContentSuiteOptions = {},
): void {
  const known = knownDifferencesIt(opts.knownDifferences ?? []);
  const it = known.it;
  describe(`ContentStore conformance: ${name}`, () => {
    let fx: ContentStoreFixture | undefined;
    let store: ContentStore;
    let ctx: Context;
    let run: string;
    const open: Writer[] = [];

    const ref = (suffix: string) => `suite-${run}-${suffix}`;
    const runLabels = (extra: Labels = {}): Labels => ({ 'suite.berth/run': run, ...extra });
    const runFilter = () => `labels."suite.berth/run"==${run}`;

    async function writer(opts: WriterOptions): Promise<Writer> {
      const w = await store.writer(ctx, opts);
      open.push(w);
      return w;
    }

    async function put(suffix: string, b: Blob, labels?: Labels): Promise<void> {
      const w = await writer({ ref: ref(suffix), desc: { size: b.data.length, digest: b.digest } });
      await writeAll(w, b.data);
      await w.commit(b.data.length, b.digest, labels ? { labels } : undefined);
      await w.close();
    }

    async function walkDigests(filters?: string[]): Promise<Digest[]> {
      const out: Digest[] = [];
      await store.walk(ctx, (info) => void out.push(info.digest), filters);
      return out.sort();
    }

    async function visible(digest: Digest): Promise<boolean> {
      const err = await caught(store.info(ctx, digest));
      if (err === undefined) return true;
      expect(err).toMatchObject({ code: 'ERR_NOT_FOUND' });
      return false;
    }

    beforeEach(async () => {
      run = randomBytes(6).toString('hex');
      fx = await factory();
      store = fx.store;
      ctx = fx.ctx;
    });

    afterEach(async () => {
      // Writers a failed case left open would hold their refs; close errors are not the point.
      await Promise.all(open.splice(0).map((w) => w.close().catch(() => {})));
      await fx?.cleanup();
      fx = undefined;
    });

    describe('writer and commit', () => {
      it.each([
        ['no descriptor', false, false],
        ['size only', true, false],
        ['digest only', false, true],
        ['size and digest', true, true],
      ])('writes, commits and reads back a blob (%s)', async (_label, withSize, withDigest) => {
        const b = blob(256);
        const w = await writer({
          ref: ref('c'),
          desc: { ...(withSize ? { size: 256 } : {}), ...(withDigest ? { digest: b.digest } : {}) },
        });
        for (let i = 0; i < b.data.length; i += 32) await w.write(b.data.subarray(i, i + 32));
        const labels = runLabels({ 'containerd.io/gc.root': new Date().toISOString() });
        const before = Date.now();
        await w.commit(0, undefined, { labels });
        const after = Date.now();
        expect(w.digest()).toBe(b.digest);
        await w.close();

        const info = await store.info(ctx, b.digest);
        expect(info).toMatchObject({ digest: b.digest, size: 256, labels });
        expectTimeWithin(info.createdAt, before, after);
        expectTimeWithin(info.updatedAt, before, after);
        expect(digestOf(await readBlob(store, ctx, { digest: b.digest }))).toBe(b.digest);
        // The ingest is gone once committed.
        await expectCode(store.status(ctx, ref('c')), 'ERR_NOT_FOUND');
      });

      it('reports offset, total, expected and times while writing', async () => {
        const b = blob(256);
        const beforeStart = Date.now();
        const w = await writer({ ref: ref('st'), desc: { size: 256, digest: b.digest } });
        const afterStart = Date.now();
        let st = await w.status();
        expect(st).toMatchObject({ ref: ref('st'), offset: 0, total: 256 });
        expect(w.digest()).toBe(EMPTY_SHA256);
        expectTimeWithin(st.startedAt, beforeStart, afterStart);
        for (const [from, to] of [
          [0, 64],
          [64, 192],
          [192, 256],
        ] as const) {
          const before = Date.now();
          await w.write(b.data.subarray(from, to));
          const after = Date.now();
          st = await w.status();
          expect(st.offset).toBe(to);
          expect(st.total).toBe(256);
          expect(w.digest()).toBe(digestOf(b.data.subarray(0, to)));
          expectTimeWithin(st.updatedAt, before, after);
          const seen = await store.status(ctx, ref('st'));
          expect(seen).toMatchObject({ ref: ref('st'), offset: to, total: 256, expected: b.digest });
        }
        await w.commit(0);
        expect(await visible(b.digest)).toBe(true);
      });

      it('is done after a successful commit', async () => {
        const b = blob(100);
        const w = await writer({ ref: ref('done') });
        await w.write(b.data);
        await w.commit(100, b.digest);
        expect(await caught(w.write(Buffer.from('more')))).toBeDefined();
        expect(await caught(w.commit(104))).toBeDefined();
        await w.close();
        expect((await store.info(ctx, b.digest)).size).toBe(100);
      });

      it('rejects an empty ref as InvalidArgument', async () => {
        await expectCode(store.writer(ctx, { ref: '' }), 'ERR_INVALID_ARGUMENT');
      });

      it('commits a 16 MiB blob intact', async () => {
        const b = blob(16 << 20);
        const w = await writer({ ref: ref('big'), desc: { size: b.data.length, digest: b.digest } });
        await writeAll(w, b.data);
        await w.commit(b.data.length, b.digest);
        await w.close();
        expect((await store.info(ctx, b.digest)).size).toBe(b.data.length);
        const ra = await store.readerAt(ctx, { digest: b.digest });
        try {
          expect(ra.size).toBe(b.data.length);
          const parts: Buffer[] = [];
          for (let off = 0; off < ra.size; off += 3 << 20) parts.push(await ra.readAt(off, 3 << 20));
          expect(digestOf(Buffer.concat(parts))).toBe(b.digest);
        } finally {
          await ra.close();
        }
      });

      it('keeps many small blobs apart', async () => {
        const blobs = Array.from({ length: 120 }, (_, i) => blob(1 + i * 7));
        for (let i = 0; i < blobs.length; i += 12) {
          await Promise.all(blobs.slice(i, i + 12).map((b, j) => put(`small-${i + j}`, b, runLabels())));
        }
        expect(await walkDigests([runFilter()])).toEqual(blobs.map((b) => b.digest).sort());
        for (const b of blobs)
          expect(digestOf(await readBlob(store, ctx, { digest: b.digest }))).toBe(b.digest);
      });
    });

    describe('resume', () => {
      it('keeps offset, digest and start time across close', async () => {
        const b = blob(256);
        const desc = { size: 256, digest: b.digest };
        const w1 = await writer({ ref: ref('r'), desc });
        const before = Date.now();
        await w1.write(b.data.subarray(0, 128));
        const after = Date.now();
        const st1 = await w1.status();
        await w1.close();

        const st = await store.status(ctx, ref('r'));
        expect(st).toMatchObject({ ref: ref('r'), offset: 128, total: 256 });
        expect((await store.listStatuses(ctx, [`ref==${ref('r')}`])).map((s) => s.offset)).toEqual([128]);

        const w2 = await writer({ ref: ref('r'), desc });
        const st2 = await w2.status();
        expect(st2).toMatchObject({ ref: ref('r'), offset: 128, total: 256 });
        expect(st2.startedAt.getTime()).toBe(st1.startedAt.getTime());
        expectTimeWithin(st2.updatedAt, before, after);
        expect(w2.digest()).toBe(digestOf(b.data.subarray(0, 128)));
        await w2.write(b.data.subarray(128));
        expect(w2.digest()).toBe(b.digest);
        await w2.commit(0);
        await w2.close();
        expect(digestOf(await readBlob(store, ctx, { digest: b.digest }))).toBe(b.digest);
      });

      it.each([500, 50_000])(
        'resumes at any point of a %d byte blob, appending or restarting',
        async (size) => {
          for (const fraction of [0, 0.1, 0.5, 0.9, 1]) {
            for (const how of ['append', 'truncate'] as const) {
              const b = blob(size);
              const limit = Math.floor(size * fraction);
              const r = ref(`resume-${fraction}-${how}`);
              const w1 = await writer({ ref: r, desc: { size, digest: b.digest } });
              await w1.write(b.data.subarray(0, limit));
              await w1.close();
              const w2 = await writer({ ref: r, desc: { size, digest: b.digest } });
              expect((await w2.status()).offset).toBe(limit);
              if (how === 'truncate') {
                await w2.truncate(0);
                expect((await w2.status()).offset).toBe(0);
                await writeAll(w2, b.data, 1024);
              } else {
                await writeAll(w2, b.data.subarray(limit), 1024);
              }
              await w2.commit(size, b.digest);
              await w2.close();
              expect((await store.info(ctx, b.digest)).size).toBe(size);
            }
          }
        },
      );
    });

    describe('ref locking', () => {
      it('refuses a second writer on a busy ref with UNAVAILABLE naming the ref', async () => {
        const w1 = await writer({ ref: ref('busy') });
        await w1.write(Buffer.from('hello'));
        await expectCode(store.writer(ctx, { ref: ref('busy') }), 'ERR_UNAVAILABLE', ref('busy'));
        // Another ref is not affected.
        const other = await writer({ ref: ref('other') });
        await other.close();
        await w1.close();
        const w2 = await writer({ ref: ref('busy') });
        expect((await w2.status()).offset).toBe(5);
        await w2.close();
      });

      it('frees the ref after commit', async () => {
        const w1 = await writer({ ref: ref('free') });
        await w1.write(blob(10).data);
        await w1.commit(0);
        await w1.close();
        const w2 = await writer({ ref: ref('free') });
        expect((await w2.status()).offset).toBe(0);
        await w2.close();
      });
    });

    describe('commit verification', () => {
      it('refuses a wrong size with FailedPrecondition, keeps the ingest, shows nothing', async () => {
        const b = blob(300);
        const w = await writer({ ref: ref('size') });
        await w.write(b.data);
        await expectCode(w.commit(301), 'ERR_FAILED_PRECONDITION', '300', '301');
        await w.close();
        expect(await visible(b.digest)).toBe(false);
        expect(await walkDigests([`digest==${b.digest}`])).toEqual([]);
        expect((await store.status(ctx, ref('size'))).offset).toBe(300);

        const again = await writer({ ref: ref('size') });
        expect(again.digest()).toBe(b.digest);
        await again.commit(300, b.digest);
        await again.close();
        expect(await visible(b.digest)).toBe(true);
      });

      it('refuses a wrong digest with FailedPrecondition naming both, shows nothing', async () => {
        const b = blob(300);
        const wrong = blob(300).digest;
        const w = await writer({ ref: ref('digest') });
        await w.write(b.data);
        await expectCode(w.commit(300, wrong), 'ERR_FAILED_PRECONDITION', b.digest, wrong);
        await w.close();
        expect(await visible(b.digest)).toBe(false);
        expect(await visible(wrong)).toBe(false);
        await expectCode(store.readerAt(ctx, { digest: b.digest }), 'ERR_NOT_FOUND');
        expect((await store.status(ctx, ref('digest'))).offset).toBe(300);
        await store.abort(ctx, ref('digest'));
        await expectCode(store.status(ctx, ref('digest')), 'ERR_NOT_FOUND');
      });

      it('checks the size and digest declared when the writer was opened', async () => {
        const b = blob(64);
        const declared = blob(64);
        const w = await writer({ ref: ref('declared'), desc: { size: 64, digest: declared.digest } });
        await w.write(b.data);
        await expectCode(w.commit(0), 'ERR_FAILED_PRECONDITION', declared.digest);
        await w.close();
        expect(await visible(b.digest)).toBe(false);
        expect(await visible(declared.digest)).toBe(false);
      });

      it('answers AlreadyExists when the content is present, with or without a digest', async () => {
        const b = blob(256);
        await put('first', b);
        for (const [i, expected] of [b.digest, undefined].entries()) {
          const r = ref(`exists-${i}`);
          const w = await writer({ ref: r });
          await w.write(b.data);
          await expectCode(w.commit(256, expected), 'ERR_ALREADY_EXISTS', b.digest);
          await w.close();
          // The ingest was dropped: the ref starts afresh.
          const again = await writer({ ref: r });
          expect((await again.status()).offset).toBe(0);
          await again.close();
        }
        expect(digestOf(await readBlob(store, ctx, { digest: b.digest }))).toBe(b.digest);
      });

      it('answers AlreadyExists when opening a writer for present content', async () => {
        const b = blob(128);
        await put('present', b);
        await expectCode(
          store.writer(ctx, { ref: ref('present-again'), desc: { digest: b.digest } }),
          'ERR_ALREADY_EXISTS',
          b.digest,
        );
        // The refusal took no lock and left no ingest.
        await expectCode(store.status(ctx, ref('present-again')), 'ERR_NOT_FOUND');
        const w = await writer({ ref: ref('present-again') });
        await w.close();
      });

      it('refuses invalid labels at commit and shows nothing', async () => {
        const b = blob(32);
        const w = await writer({ ref: ref('badlabels') });
        await w.write(b.data);
        await expectCode(
          w.commit(32, b.digest, { labels: { big: 'x'.repeat(5000) } }),
          'ERR_INVALID_ARGUMENT',
        );
        await w.close();
        expect(await visible(b.digest)).toBe(false);
      });
    });

    describe('truncate', () => {
      it('restarts an ingest from zero', async () => {
        const junk = blob(100);
        const b = blob(80);
        const w = await writer({ ref: ref('trunc') });
        await w.write(junk.data);
        await w.truncate(0);
        expect((await w.status()).offset).toBe(0);
        expect(w.digest()).toBe(EMPTY_SHA256);
        await w.write(b.data);
        await w.commit(80, b.digest);
        await w.close();
        expect(digestOf(await readBlob(store, ctx, { digest: b.digest }))).toBe(b.digest);
        expect(await visible(junk.digest)).toBe(false);
      });
    });

    describe('reading', () => {
      it('reads ranges, short at the end and empty past it', async () => {
        const b = blob(1000);
        await put('ranged', b);
        const ra = await store.readerAt(ctx, { digest: b.digest });
        try {
          expect(ra.size).toBe(1000);
          expect(await ra.readAt(0, 10)).toEqual(b.data.subarray(0, 10));
          expect(await ra.readAt(500, 250)).toEqual(b.data.subarray(500, 750));
          expect(await ra.readAt(990, 100)).toEqual(b.data.subarray(990));
          expect((await ra.readAt(1000, 10)).length).toBe(0);
          expect((await ra.readAt(5000, 10)).length).toBe(0);
          expect((await ra.readAt(100, 0)).length).toBe(0);
          await expectCode(ra.readAt(-1, 10), 'ERR_INVALID_ARGUMENT');
        } finally {
          await ra.close();
        }
      });

      it('answers NotFound for missing content, naming the digest', async () => {
        const missing = blob(10).digest;
        await expectCode(store.readerAt(ctx, { digest: missing }), 'ERR_NOT_FOUND', missing);
        await expectCode(store.info(ctx, missing), 'ERR_NOT_FOUND', missing);
      });
    });

    describe('labels', () => {
      it('updates all labels, named labels, and the update time', async () => {
        const b = blob(256);
        const root = new Date().toISOString();
        const initial = runLabels({ k1: 'v1', k2: 'v2', 'containerd.io/gc.root': root });
        await put('labels', b, initial);
        const committed = await store.info(ctx, b.digest);
        expect(committed.labels).toEqual(initial);

        // No fieldpaths: the labels are replaced wholesale.
        await sleep(20);
        const replaced = runLabels({ k1: 'newvalue', k3: 'v3', 'containerd.io/gc.root': root });
        const u1 = await store.update(ctx, { digest: b.digest, labels: replaced });
        expect(u1.labels).toEqual(replaced);
        expect(u1.size).toBe(256);
        expect(u1.updatedAt.getTime()).toBeGreaterThan(committed.updatedAt.getTime());
        const i1 = await store.info(ctx, b.digest);
        expect(i1.labels).toEqual(replaced);
        expect(i1.updatedAt.getTime()).toBe(u1.updatedAt.getTime());
        expect(i1.createdAt.getTime()).toBe(committed.createdAt.getTime());

        // Named paths: k1 set, k3 removed (absent from the update), others kept.
        await store.update(ctx, { digest: b.digest, labels: { k1: 'v1' } }, ['labels.k3', 'labels.k1']);
        expect((await store.info(ctx, b.digest)).labels).toEqual(
          runLabels({ k1: 'v1', 'containerd.io/gc.root': root }),
        );

        // `labels` replaces all.
        await store.update(ctx, { digest: b.digest, labels: { only: 'one' } }, ['labels']);
        expect((await store.info(ctx, b.digest)).labels).toEqual({ only: 'one' });
      });

      it('refuses invalid labels and unknown fields with InvalidArgument, changing nothing', async () => {
        const b = blob(16);
        await put('badupdate', b, { keep: 'me' });
        await expectCode(
          store.update(ctx, { digest: b.digest, labels: { huge: 'v'.repeat(4096) } }),
          'ERR_INVALID_ARGUMENT',
          'huge',
        );
        await expectCode(
          store.update(ctx, { digest: b.digest, labels: { '': 'v' } }),
          'ERR_INVALID_ARGUMENT',
        );
        await expectCode(
          store.update(ctx, { digest: b.digest, labels: {} }, ['size']),
          'ERR_INVALID_ARGUMENT',
          'size',
        );
        expect((await store.info(ctx, b.digest)).labels).toEqual({ keep: 'me' });
      });

      it('answers NotFound when updating missing content', async () => {
        const missing = blob(8).digest;
        await expectCode(
          store.update(ctx, { digest: missing, labels: { a: 'b' } }),
          'ERR_NOT_FOUND',
          missing,
        );
      });
    });

    describe('walk', () => {
      it('filters by digest and labels', async () => {
        const [a1, a2, b1] = [blob(10), blob(20), blob(30)];
        await put('wa1', a1, runLabels({ kind: 'a' }));
        await put('wa2', a2, runLabels({ kind: 'a' }));
        await put('wb1', b1, runLabels({ kind: 'b' }));
        const all = [a1, a2, b1].map((b) => b.digest).sort();
        expect(await walkDigests([runFilter()])).toEqual(all);
        expect(await walkDigests([`${runFilter()},labels.kind==a`])).toEqual([a1.digest, a2.digest].sort());
        expect(await walkDigests([`${runFilter()},labels.kind!=a`])).toEqual([b1.digest]);
        // Several filters are alternatives.
        expect(await walkDigests([`digest==${a1.digest}`, `digest==${b1.digest}`])).toEqual(
          [a1.digest, b1.digest].sort(),
        );
        const everything = await walkDigests();
        for (const d of all) expect(everything).toContain(d);

        const seen: ContentInfo[] = [];
        await store.walk(ctx, (info) => void seen.push(info), [`digest==${b1.digest}`]);
        expect(seen).toHaveLength(1);
        expect(seen[0]).toMatchObject({ digest: b1.digest, size: 30, labels: runLabels({ kind: 'b' }) });
      });

      it('refuses a malformed filter with InvalidArgument', async () => {
        await expectCode(
          store.walk(ctx, () => {}, ['labels.a==b,,']),
          'ERR_INVALID_ARGUMENT',
        );
      });

      it('stops with the error the callback throws', async () => {
        const b = blob(10);
        await put('wstop', b, runLabels());
        const boom = new Error('stop here');
        const err = await caught(
          store.walk(ctx, () => {
            throw boom;
          }, [runFilter()]),
        );
        expect(err?.message).toContain('stop here');
      });
    });

    describe('delete', () => {
      it('removes content; a second delete is NotFound', async () => {
        const b = blob(40);
        await put('del', b, runLabels());
        await store.delete(ctx, b.digest);
        expect(await visible(b.digest)).toBe(false);
        await expectCode(store.readerAt(ctx, { digest: b.digest }), 'ERR_NOT_FOUND');
        expect(await walkDigests([runFilter()])).toEqual([]);
        await expectCode(store.delete(ctx, b.digest), 'ERR_NOT_FOUND', b.digest);
        // The same content can come back, without the old labels.
        await put('del-again', b);
        expect((await store.info(ctx, b.digest)).labels).toEqual({});
      });
    });

    describe('ingest management', () => {
      it('lists statuses, filtered by ref', async () => {
        const sizes: Record<string, number> = { a: 5, b: 7, c: 11 };
        for (const [k, n] of Object.entries(sizes)) {
          const w = await writer({ ref: ref(`ls-${k}`), desc: { size: 100 } });
          await w.write(randomBytes(n));
          if (k !== 'c') await w.close(); // c stays open: live ingests are listed too
        }
        const mine = (list: IngestStatus[]) =>
          list
            .filter((s) => s.ref.startsWith(ref('ls-')))
            .map((s) => [s.ref, s.offset, s.total])
            .sort();
        const expected = Object.entries(sizes).map(([k, n]) => [ref(`ls-${k}`), n, 100]);
        expect(mine(await store.listStatuses(ctx))).toEqual(expected);
        expect(mine(await store.listStatuses(ctx, [`ref~=^suite-${run}-ls-`]))).toEqual(expected);
        expect(mine(await store.listStatuses(ctx, [`ref==${ref('ls-b')}`]))).toEqual([expected[1]]);
        expect(await store.listStatuses(ctx, [`ref==${ref('ls-none')}`])).toEqual([]);
        await expectCode(store.listStatuses(ctx, ['ref==']), 'ERR_INVALID_ARGUMENT');
        await expectCode(store.status(ctx, ref('ls-none')), 'ERR_NOT_FOUND', ref('ls-none'));
      });

      it('aborts an ingest; a second abort is NotFound', async () => {
        const w = await writer({ ref: ref('ab') });
        await w.write(randomBytes(50));
        await w.close();
        await store.abort(ctx, ref('ab'));
        await expectCode(store.status(ctx, ref('ab')), 'ERR_NOT_FOUND');
        expect((await store.listStatuses(ctx, [`ref==${ref('ab')}`])).length).toBe(0);
        await expectCode(store.abort(ctx, ref('ab')), 'ERR_NOT_FOUND', ref('ab'));
        const again = await writer({ ref: ref('ab') });
        expect((await again.status()).offset).toBe(0);
        await again.close();
      });

      it('aborts a live ingest: its writer can no longer commit', async () => {
        const b = blob(64);
        const w = await writer({ ref: ref('ablive') });
        await w.write(b.data);
        await store.abort(ctx, ref('ablive'));
        expect(await caught(w.commit(64, b.digest))).toBeDefined();
        await w.close().catch(() => {});
        expect(await visible(b.digest)).toBe(false);
        await expectCode(store.status(ctx, ref('ablive')), 'ERR_NOT_FOUND');
      });
    });

    describe('malformed digests', () => {
      it.each(MALFORMED)('refuses %s with InvalidArgument everywhere', async (bad) => {
        await expectCode(store.info(ctx, bad), 'ERR_INVALID_ARGUMENT', bad);
        await expectCode(store.readerAt(ctx, { digest: bad }), 'ERR_INVALID_ARGUMENT', bad);
        await expectCode(store.delete(ctx, bad), 'ERR_INVALID_ARGUMENT', bad);
        await expectCode(store.update(ctx, { digest: bad, labels: {} }), 'ERR_INVALID_ARGUMENT', bad);
        await expectCode(
          store.writer(ctx, { ref: ref('bad'), desc: { digest: bad } }),
          'ERR_INVALID_ARGUMENT',
          bad,
        );
        const w = await writer({ ref: ref('bad-commit') });
        await w.write(Buffer.from('x'));
        await expectCode(w.commit(1, bad), 'ERR_INVALID_ARGUMENT', bad);
        await w.close();
      });
    });
  });
  known.check();
}
