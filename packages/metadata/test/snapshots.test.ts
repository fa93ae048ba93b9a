import {
  AlreadyExistsError,
  type Context,
  LEASE_EXPIRE_LABEL,
  type SnapshotInfo,
  UnavailableError,
} from '@berth/api';
import BetterSqlite3 from 'better-sqlite3';
import { GC_ROOT_LABEL, type MetadataSnapshotter, MIGRATIONS, openMetadataDB } from '../src';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';
import { MemorySnapshotter } from './memory-snapshotter';

const A = ns('a');
const B = ns('b');
const ROOT = { [GC_ROOT_LABEL]: 'yes' };

describe('metadata snapshotter', () => {
  let f: Fixture;
  let mem: MemorySnapshotter;
  let sn: MetadataSnapshotter;

  beforeEach(() => {
    mem = new MemorySnapshotter();
    f = fixture({ snapshotters: { overlayfs: mem } });
    sn = f.db.snapshotter('overlayfs')!;
  });
  afterEach(() => f.cleanup());

  const keys = async (ctx: Context, filters?: string[]) => {
    const out: string[] = [];
    await sn.walk(ctx, (i) => void out.push(i.name), filters);
    return out;
  };
  const has = (ctx: Context, key: string) =>
    sn.stat(ctx, key).then(
      () => true,
      () => false,
    );
  const backingKeys = () => [...mem.snapshots.keys()].sort();

  /** A committed snapshot `name` on parent, labelled as the caller says. */
  async function committed(ctx: Context, name: string, parent = '', labels: Record<string, string> = {}) {
    await sn.prepare(ctx, `${name}-active`, parent);
    await sn.commit(ctx, name, `${name}-active`, { labels });
  }

  describe('namespaces', () => {
    it('keeps each namespace its own keys, backed by <namespace>/<seq>/<key>', async () => {
      await sn.prepare(A, 'same', '');
      await sn.prepare(B, 'same', '');
      expect(backingKeys()).toEqual(['a/1/same', 'b/2/same']);
      expect(await keys(A)).toEqual(['same']);
      await sn.remove(A, 'same');
      expect(await has(A, 'same')).toBe(false);
      expect(await has(B, 'same')).toBe(true);
      expect(await keys(ns('c'))).toEqual([]);
    });

    it('gives a committed snapshot a backing key of its own and maps mounts and usage', async () => {
      await sn.prepare(A, 'k', '');
      await sn.commit(A, 'layer', 'k');
      expect(backingKeys()).toEqual(['a/2/layer']);
      expect(mem.calls).toContain('commit a/2/layer a/1/k');
      const mounts = await sn.view(A, 'v', 'layer');
      expect(mounts[0]!.source).toBe('/mem/a/3/v');
      expect(await sn.mounts(A, 'v')).toEqual(mounts);
      expect(await sn.usage(A, 'layer')).toEqual({ size: 4096, inodes: 1 });
      expect(mem.snapshots.get('a/3/v')!.parent).toBe('a/2/layer');
    });

    it('never reuses a backing key, even for a key prepared again', async () => {
      await sn.prepare(A, 'k', '');
      await sn.remove(A, 'k');
      await sn.prepare(A, 'k', '');
      expect(mem.calls.filter((c) => c.startsWith('prepare'))).toEqual(['prepare a/1/k ', 'prepare a/2/k ']);
    });

    it('requires a namespace', async () => {
      for (const call of [
        () => sn.prepare({}, 'k', ''),
        () => sn.stat({}, 'k'),
        () => sn.walk({}, () => {}),
        () => sn.remove({}, 'k'),
        () => sn.commit({}, 'n', 'k'),
        () => sn.usage({}, 'k'),
        () => sn.mounts({}, 'k'),
        () => sn.update({}, { name: 'k', labels: {} }),
      ]) {
        expect(await errorOf(call)).toMatchObject({
          code: 'ERR_FAILED_PRECONDITION',
          message: 'namespace is required',
        });
      }
    });

    it('blocks deleting a namespace that has snapshots, naming the snapshotter', async () => {
      await sn.prepare(A, 'k', '');
      const e = await errorOf(() => f.db.namespaces.delete({}, 'a'));
      expect(e).toMatchObject({
        code: 'ERR_FAILED_PRECONDITION',
        message: 'namespace "a" must be empty, but it still has snapshots on "overlayfs" snapshotter',
      });
      await sn.remove(A, 'k');
      await f.db.namespaces.delete({}, 'a');
      expect(await f.db.namespaces.list({})).toEqual([]);
    });
  });

  describe('info', () => {
    it('stats with the backing kind and its own parent, labels and times', async () => {
      await committed(A, 'base', '', { 'containerd.io/snapshot/inherited': 'x', mine: 'only here' });
      await sn.prepare(A, 'top', 'base', { labels: { a: '1' } });
      const base = await sn.stat(A, 'base');
      expect(base).toMatchObject({
        kind: 'committed',
        name: 'base',
        parent: '',
        labels: { 'containerd.io/snapshot/inherited': 'x', mine: 'only here' },
      });
      // Only inherited labels reach the backing snapshotter.
      expect(mem.snapshots.get('a/2/base')!.labels).toEqual({ 'containerd.io/snapshot/inherited': 'x' });
      const top = await sn.stat(A, 'top');
      expect(top).toMatchObject({ kind: 'active', name: 'top', parent: 'base', labels: { a: '1' } });
      expect(top.createdAt.getTime()).toBe(top.updatedAt.getTime());
    });

    it("answers containerd's words for what is missing or taken", async () => {
      await committed(A, 'base');
      await sn.prepare(A, 'active', 'base');
      expect(await errorOf(() => sn.stat(A, 'nope'))).toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: 'snapshot nope does not exist: not found',
      });
      expect(await errorOf(() => sn.prepare(A, 'active', ''))).toMatchObject({
        code: 'ERR_ALREADY_EXISTS',
        message: 'snapshot "active": already exists',
      });
      expect(await errorOf(() => sn.prepare(A, 'x', 'missing'))).toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: 'parent snapshot missing does not exist: not found',
      });
      expect(await errorOf(() => sn.commit(A, 'base', 'active'))).toMatchObject({
        code: 'ERR_ALREADY_EXISTS',
        message: 'snapshot "base": already exists',
      });
      expect(await errorOf(() => sn.commit(A, 'new', 'missing'))).toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: 'snapshot missing does not exist: not found',
      });
      expect(await errorOf(() => sn.remove(A, 'base'))).toMatchObject({
        code: 'ERR_FAILED_PRECONDITION',
        message: 'cannot remove snapshot with child: failed precondition',
      });
      expect(await errorOf(() => sn.prepare(A, '', ''))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      expect(
        await errorOf(() => sn.prepare(A, 'big', '', { labels: { k: 'v'.repeat(5000) } })),
      ).toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
      // Nothing half-made: the failed calls left no backing snapshot behind.
      expect(backingKeys()).toEqual(['a/2/base', 'a/3/active']);
    });

    it('passes a backing failure through and records nothing', async () => {
      mem.failNext.set('prepare', new Error('disk on fire'));
      expect(await errorOf(() => sn.prepare(A, 'k', ''))).toMatchObject({ message: 'disk on fire' });
      expect(await has(A, 'k')).toBe(false);
      await sn.prepare(A, 'k', '');
      mem.failNext.set('commit', new AlreadyExistsError('committed snapshot x already exists'));
      expect(await errorOf(() => sn.commit(A, 'c', 'k'))).toMatchObject({ code: 'ERR_ALREADY_EXISTS' });
      expect((await sn.stat(A, 'k')).kind).toBe('active');
      expect(await has(A, 'c')).toBe(false);
    });

    it('updates labels by field paths and hands inherited ones down', async () => {
      await committed(A, 'base', '', { keep: '1', drop: '2', 'containerd.io/snapshot/x': 'old' });
      const got = await sn.update(
        A,
        { name: 'base', labels: { drop: '', add: '3', 'containerd.io/snapshot/x': 'new' } },
        ['labels.drop', 'labels.add', 'labels.containerd.io/snapshot/x'],
      );
      expect(got.labels).toEqual({ keep: '1', add: '3', 'containerd.io/snapshot/x': 'new' });
      expect(got.updatedAt.getTime()).toBeGreaterThanOrEqual(got.createdAt.getTime());
      expect(await sn.stat(A, 'base')).toMatchObject({ labels: got.labels, updatedAt: got.updatedAt });
      expect(mem.snapshots.get('a/2/base')!.labels).toEqual({ 'containerd.io/snapshot/x': 'new' });

      const all = await sn.update(A, { name: 'base', labels: { only: 'this' } });
      expect(all.labels).toEqual({ only: 'this' });
      expect(await errorOf(() => sn.update(A, { name: 'base', labels: {} }, ['parent']))).toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
        message: 'cannot update "parent" field on snapshot "base": invalid argument',
      });
      expect(await errorOf(() => sn.update(A, { name: 'nope', labels: {} }))).toMatchObject({
        code: 'ERR_NOT_FOUND',
      });
      expect(await errorOf(() => sn.update(A, { name: '', labels: {} }))).toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
    });

    it('walks in key order with filters on kind, name, parent and labels', async () => {
      await committed(A, 'b-base', '', { tier: 'gold' });
      await sn.prepare(A, 'c-active', 'b-base', { labels: { tier: 'silver' } });
      await sn.view(A, 'a-view', 'b-base');
      const infos: SnapshotInfo[] = [];
      await sn.walk(A, (i) => void infos.push(i));
      expect(infos.map((i) => [i.name, i.kind, i.parent])).toEqual([
        ['a-view', 'view', 'b-base'],
        ['b-base', 'committed', ''],
        ['c-active', 'active', 'b-base'],
      ]);
      expect(await keys(A, ['kind==committed'])).toEqual(['b-base']);
      expect(await keys(A, ['parent==b-base'])).toEqual(['a-view', 'c-active']);
      expect(await keys(A, ['labels.tier==gold', 'name==a-view'])).toEqual(['a-view', 'b-base']);
      expect(await keys(A, ['labels.tier~=^s'])).toEqual(['c-active']);
      // A record whose backing snapshot vanished is skipped, not an error.
      mem.snapshots.delete('a/3/c-active');
      expect(await keys(A)).toEqual(['a-view', 'b-base']);
    });

    it('closes the backing snapshotter', async () => {
      await sn.close();
      expect(mem.closed).toBe(1);
    });
  });

  describe('garbage collection', () => {
    it('forgets on remove and frees the backing snapshot at the next collection', async () => {
      await committed(A, 'base', '', ROOT);
      await sn.prepare(A, 'tmp', 'base', { labels: ROOT });
      await sn.remove(A, 'tmp');
      expect(mem.snapshots.has('a/3/tmp')).toBe(true);
      expect(f.db.dirtyCount).toBeGreaterThan(0);
      const report = await f.db.collectGarbage();
      expect(backingKeys()).toEqual(['a/2/base']);
      expect(report.removed).toContainEqual({ type: 'snapshots/overlayfs', id: 'a/3/tmp' });
      expect(mem.cleanups).toBe(1);
      // Nothing to do next time: no walk, no cleanup.
      const calls = mem.calls.length;
      await f.db.collectGarbage();
      expect(mem.calls.length).toBe(calls);
    });

    it('collects unreferenced snapshots, children before parents', async () => {
      await committed(A, 'l1');
      await committed(A, 'l2', 'l1');
      await sn.prepare(A, 'top', 'l2');
      const report = await f.db.collectGarbage();
      expect(await keys(A)).toEqual([]);
      expect(backingKeys()).toEqual([]);
      const removes = mem.calls.filter((c) => c.startsWith('remove'));
      expect(removes).toEqual(['remove a/5/top', 'remove a/4/l2', 'remove a/2/l1']);
      expect(report.removed.filter((r) => r.namespace === 'a').map((r) => r.id)).toEqual(['top', 'l2', 'l1']);
    });

    it('keeps a gc.root snapshot with its parents', async () => {
      await committed(A, 'l1');
      await committed(A, 'l2', 'l1');
      await sn.prepare(A, 'top', 'l2', { labels: ROOT });
      await committed(A, 'orphan');
      await f.db.collectGarbage();
      expect(await keys(A)).toEqual(['l1', 'l2', 'top']);
    });

    it('keeps snapshots named by gc.ref.snapshot labels on content and on snapshots', async () => {
      await committed(A, 'layer');
      await committed(A, 'other');
      await committed(A, 'via-snapshot');
      await committed(A, 'holder', '', {
        ...ROOT,
        'containerd.io/gc.ref.snapshot.overlayfs/x': 'via-snapshot',
      });
      await put(f.db.content!, A, 'config', {
        labels: { ...ROOT, 'containerd.io/gc.ref.snapshot.overlayfs': 'layer' },
      });
      await f.db.collectGarbage();
      expect(await keys(A)).toEqual(['holder', 'layer', 'via-snapshot']);
    });

    it('keeps what a lease holds: writes under ctx.lease add to it, commit swaps key for name', async () => {
      await f.db.leases.create(A, { id: 'l' });
      const leased = ns('a', 'l');
      await sn.prepare(leased, 'k', '');
      expect(await f.db.leases.listResources(A, 'l')).toEqual([{ type: 'snapshots/overlayfs', id: 'k' }]);
      await f.db.collectGarbage();
      expect(await keys(A)).toEqual(['k']);
      await sn.commit(leased, 'c', 'k');
      expect(await f.db.leases.listResources(A, 'l')).toEqual([{ type: 'snapshots/overlayfs', id: 'c' }]);
      await sn.view(leased, 'v', 'c');
      await sn.remove(leased, 'v');
      expect(await f.db.leases.listResources(A, 'l')).toEqual([{ type: 'snapshots/overlayfs', id: 'c' }]);
      await f.db.collectGarbage();
      expect(await keys(A)).toEqual(['c']);
      await f.db.leases.delete(A, 'l');
      await f.db.collectGarbage();
      expect(await keys(A)).toEqual([]);
      expect(backingKeys()).toEqual([]);
    });

    it('lets an expired lease go', async () => {
      await f.db.leases.create(A, { id: 'old', labels: { [LEASE_EXPIRE_LABEL]: '2000-01-01T00:00:00Z' } });
      await sn.prepare(ns('a', 'old'), 'k', '');
      await f.db.collectGarbage();
      expect(await keys(A)).toEqual([]);
    });

    it('refuses writes under a lease that does not exist, leaving nothing behind', async () => {
      expect(await errorOf(() => sn.prepare(ns('a', 'ghost'), 'k', ''))).toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: 'lease "ghost": not found',
      });
      expect(await has(A, 'k')).toBe(false);
      expect(backingKeys()).toEqual([]);
    });

    it('removes backing snapshots no record holds (a crash between create and record)', async () => {
      await committed(A, 'kept', '', ROOT);
      await mem.prepare({}, 'stray-parent', '');
      await mem.commit({}, 'stray', 'stray-parent');
      await mem.prepare({}, 'stray-child', 'stray');
      await f.db.collectGarbage();
      expect(backingKeys()).toEqual(['a/2/kept']);
    });

    it('leaves an unreachable backing snapshotter for the next collection, collecting the rest', async () => {
      await committed(A, 'l1');
      mem.failNext.set('walk', new UnavailableError('connection refused'));
      const report = await f.db.collectGarbage();
      expect(report.removed).toContainEqual({ type: 'snapshots/overlayfs', namespace: 'a', id: 'l1' });
      expect(backingKeys()).toEqual(['a/2/l1']);
      await f.db.collectGarbage();
      expect(backingKeys()).toEqual([]);
    });

    it('keeps a parent whose backing child cannot be removed and retries later', async () => {
      await committed(A, 'l1');
      await sn.prepare(A, 'top', 'l1');
      mem.failNext.set('remove', new Error('busy'));
      await expect(f.db.collectGarbage()).rejects.toThrow('busy');
      await f.db.collectGarbage();
      expect(backingKeys()).toEqual([]);
    });
  });

  describe('remote targets (containerd.io/snapshot.ref)', () => {
    it('records the committed snapshot the backing snapshotter already has and answers AlreadyExists', async () => {
      await committed(A, 'base');
      // The remote snapshotter already holds the layer under its own key.
      await mem.prepare({}, 'remote-active', 'a/2/base', {});
      await mem.commit({}, 'remote-layer', 'remote-active', {
        labels: { 'containerd.io/snapshot.ref': 'layer-1' },
      });
      mem.failNext.set('prepare', new AlreadyExistsError('target exists'));
      const e = await errorOf(() =>
        sn.prepare(A, 'extract-1', 'base', { labels: { 'containerd.io/snapshot.ref': 'layer-1' } }),
      );
      expect(e).toMatchObject({
        code: 'ERR_ALREADY_EXISTS',
        message: 'target snapshot "layer-1" from snapshotter: already exists',
      });
      expect(await sn.stat(A, 'layer-1')).toMatchObject({ kind: 'committed', parent: 'base' });
      expect(await has(A, 'extract-1')).toBe(false);
      // Asked again, the metadata already has it.
      expect(
        await errorOf(() =>
          sn.prepare(A, 'extract-2', 'base', { labels: { 'containerd.io/snapshot.ref': 'layer-1' } }),
        ),
      ).toMatchObject({ code: 'ERR_ALREADY_EXISTS', message: 'target snapshot "layer-1": already exists' });
    });

    it('is Unknown when the backing snapshotter says AlreadyExists with no target', async () => {
      mem.failNext.set('prepare', new AlreadyExistsError('surprise'));
      expect(await errorOf(() => sn.prepare(A, 'k', ''))).toMatchObject({
        code: 'ERR_UNKNOWN',
        message: 'unexpected error from snapshotter: surprise: unknown',
      });
    });
  });

  describe('db', () => {
    it('refuses two snapshotters of one name and bad names', () => {
      expect(() => f.db.addSnapshotter('overlayfs', new MemorySnapshotter())).toThrow(/already exists/);
      expect(() => f.db.addSnapshotter('Bad Name', new MemorySnapshotter())).toThrow();
      const native = f.db.addSnapshotter('native', new MemorySnapshotter());
      expect(f.db.snapshotter('native')).toBe(native);
      expect([...f.db.snapshotters.keys()]).toEqual(['overlayfs', 'native']);
    });

    it('keeps snapshots across reopening, and upgrades a version 1 file', async () => {
      await committed(A, 'base', '', { l: 'v' });
      await f.db.close();
      const again = f.open({ snapshotters: { overlayfs: mem } });
      expect(await again.snapshotter('overlayfs')!.stat(A, 'base')).toMatchObject({ labels: { l: 'v' } });

      const path = `${f.dir}/v1.db`;
      const raw = new BetterSqlite3(path);
      const { migrate } = await import('../src');
      migrate(raw, MIGRATIONS.slice(0, 1));
      raw.prepare("INSERT INTO namespaces (name, created_at) VALUES ('old', 1)").run();
      raw.close();
      const upgraded = openMetadataDB(path, { snapshotters: { native: new MemorySnapshotter() } });
      try {
        expect(upgraded.migration).toEqual({ from: 1, to: MIGRATIONS.length });
        expect(await upgraded.namespaces.list({})).toEqual(['old']);
        await upgraded.snapshotter('native')!.prepare(ns('old'), 'k', '');
      } finally {
        await upgraded.close();
      }
    });
  });
});
