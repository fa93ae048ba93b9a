import { type ContainerInput, type ContainerStore, type Context, SPEC_TYPE_URL } from '@berth/api';
import type { MetadataSnapshotter } from '../src';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';
import { MemorySnapshotter } from './memory-snapshotter';

const A = ns('a');
const B = ns('b');
const RUNC = 'io.containerd.runc.v2';
const spec = (text = '{"ociVersion":"1.0.2"}') => ({ typeUrl: SPEC_TYPE_URL, value: Buffer.from(text) });

const container = (id: string, more: Partial<ContainerInput> = {}): ContainerInput => ({
  id,
  labels: {},
  image: '',
  runtime: { name: RUNC },
  spec: spec(),
  snapshotter: '',
  snapshotKey: '',
  extensions: {},
  sandbox: '',
  ...more,
});

describe('metadata containers', () => {
  let f: Fixture;
  let store: ContainerStore;
  let mem: MemorySnapshotter;
  let sn: MetadataSnapshotter;

  beforeEach(() => {
    mem = new MemorySnapshotter();
    f = fixture({ snapshotters: { overlayfs: mem } });
    store = f.db.containers;
    sn = f.db.snapshotter('overlayfs')!;
  });
  afterEach(() => f.cleanup());

  const ids = async (ctx: Context, filters?: string[]) => (await store.list(ctx, filters)).map((c) => c.id);

  describe('records', () => {
    it('creates and reads back every field, bytes of Any values included', async () => {
      const input = container('c1', {
        labels: { a: 'b', empty: '' },
        image: 'docker.io/library/busybox:latest',
        runtime: {
          name: RUNC,
          options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from([1, 2]) },
        },
        spec: spec('{"process":{}}'),
        snapshotter: 'overlayfs',
        snapshotKey: 'c1-snapshot',
        extensions: { ext: { typeUrl: 'x.Ext', value: Buffer.from([0, 255]) } },
        sandbox: 'sb',
      });
      const created = await store.create(A, input);
      expect(created).toEqual({
        ...input,
        labels: { a: 'b' },
        createdAt: expect.any(Date),
        updatedAt: expect.any(Date),
      });
      expect(await store.get(A, 'c1')).toEqual(created);
      const got = await store.get(A, 'c1');
      expect(Buffer.isBuffer(got.spec!.value)).toBe(true);
      expect(got.spec!.value.toString()).toBe('{"process":{}}');
    });

    it('lists sorted by id, each namespace its own', async () => {
      await store.create(A, container('zeta'));
      await store.create(A, container('alpha'));
      await store.create(B, container('zeta'));
      expect(await ids(A)).toEqual(['alpha', 'zeta']);
      expect(await ids(B)).toEqual(['zeta']);
      expect(await ids(ns('c'))).toEqual([]);
      await store.delete(A, 'zeta');
      expect(await ids(A)).toEqual(['alpha']);
      expect(await ids(B)).toEqual(['zeta']);
    });

    it('answers AlreadyExists and NotFound with the id', async () => {
      await store.create(A, container('dup'));
      const dup = await errorOf(() => store.create(A, container('dup', { image: 'other' })));
      expect(dup.code).toBe('ERR_ALREADY_EXISTS');
      expect(dup.message).toBe('container "dup": already exists');
      expect((await store.get(A, 'dup')).image).toBe('');

      const get = await errorOf(() => store.get(B, 'dup'));
      expect(get.code).toBe('ERR_NOT_FOUND');
      expect(get.message).toBe('container "dup" in namespace "b": not found');
      const upd = await errorOf(() => store.update(A, container('ghost')));
      expect(upd.code).toBe('ERR_NOT_FOUND');
      expect(upd.message).toBe('container "ghost": not found');
      const del = await errorOf(() => store.delete(A, 'ghost'));
      expect(del.code).toBe('ERR_NOT_FOUND');
      expect(del.message).toBe('container "ghost": not found');
    });

    it.each([
      ['an empty id', container(''), 'identifier must not be empty'],
      ['an invalid id', container('bad id'), 'identifier "bad id" must match'],
      [
        'no runtime name',
        container('c', { runtime: { name: '' } }),
        'container "c": runtime name must be set',
      ],
      ['no spec', container('c', { spec: undefined }), 'container "c": spec must be set'],
      [
        'a snapshot key without snapshotter',
        container('c', { snapshotKey: 'k' }),
        'container "c": snapshotter must be set if snapshot key "k" is set',
      ],
      [
        'an empty extension key',
        container('c', { extensions: { '': { typeUrl: 'x', value: Buffer.alloc(0) } } }),
        'container "c": extension keys must not be zero-length',
      ],
      [
        'an oversized label',
        container('c', { labels: { k: 'v'.repeat(5000) } }),
        'greater than maximum size',
      ],
    ])('rejects %s as InvalidArgument, storing nothing', async (_what, input, message) => {
      const err = await errorOf(() => store.create(A, input));
      expect(err.code).toBe('ERR_INVALID_ARGUMENT');
      expect(err.message).toContain(message);
      expect(await ids(A)).toEqual([]);
    });

    it('requires a namespace', async () => {
      const err = await errorOf(() => store.create({}, container('c')));
      expect(err.code).toBe('ERR_FAILED_PRECONDITION');
      expect((await errorOf(() => store.get({}, 'c'))).code).toBe('ERR_FAILED_PRECONDITION');
    });
  });

  describe('filters', () => {
    beforeEach(async () => {
      await store.create(
        A,
        container('web', { image: 'nginx:1', labels: { tier: 'front' }, snapshotter: 'overlayfs' }),
      );
      await store.create(A, container('db', { image: 'postgres:16', labels: { tier: 'back' } }));
      await store.create(
        A,
        container('job', {
          runtime: { name: 'io.containerd.berth.v1' },
          snapshotter: 'native',
          snapshotKey: 'job',
        }),
      );
    });

    it.each([
      [['id==web'], ['web']],
      [['image~=^post'], ['db']],
      [['image'], ['db', 'web']],
      [['runtime.name==io.containerd.berth.v1'], ['job']],
      [['runtime.name!=io.containerd.berth.v1'], ['db', 'web']],
      [['snapshotter==overlayfs'], ['web']],
      [['labels.tier==back'], ['db']],
      [['labels.tier'], ['db', 'web']],
      [
        ['labels.tier==front', 'id==job'],
        ['job', 'web'],
      ],
      [['id==web,labels.tier==back'], []],
    ])('%j selects %j', async (filters, want) => {
      expect(await ids(A, filters)).toEqual(want);
    });

    it('rejects a malformed filter', async () => {
      const err = await errorOf(() => store.list(A, ['id=~x']));
      expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    });
  });

  describe('update', () => {
    beforeEach(async () => {
      await store.create(
        A,
        container('c', {
          labels: { keep: '1', change: 'old', drop: 'x' },
          image: 'img:1',
          snapshotter: 'overlayfs',
          snapshotKey: 'k1',
          extensions: {
            e1: { typeUrl: 't1', value: Buffer.from('1') },
            e2: { typeUrl: 't2', value: Buffer.from('2') },
          },
        }),
      );
    });

    it('replaces labels, spec, extensions, image and snapshot key when no paths are given', async () => {
      const before = await store.get(A, 'c');
      const updated = await store.update(
        A,
        container('c', {
          labels: { fresh: 'y' },
          image: 'img:2',
          spec: spec('{"v":2}'),
          snapshotter: 'overlayfs',
          snapshotKey: 'k2',
          sandbox: 'ignored',
          runtime: { name: RUNC, options: { typeUrl: 'ignored', value: Buffer.alloc(0) } },
        }),
      );
      expect(updated).toMatchObject({
        labels: { fresh: 'y' },
        image: 'img:2',
        snapshotKey: 'k2',
        extensions: {},
        sandbox: '',
        runtime: { name: RUNC },
      });
      expect(updated.spec!.value.toString()).toBe('{"v":2}');
      expect(updated.createdAt).toEqual(before.createdAt);
      expect(await store.get(A, 'c')).toEqual(updated);
    });

    it('refuses to change the snapshotter or the runtime on a full update', async () => {
      const sn2 = await errorOf(() =>
        store.update(A, container('c', { snapshotter: 'native', snapshotKey: 'k1' })),
      );
      expect(sn2.code).toBe('ERR_INVALID_ARGUMENT');
      expect(sn2.message).toBe('container "c": snapshotter is immutable ("overlayfs", got "native")');
      const rt = await errorOf(() =>
        store.update(
          A,
          container('c', { snapshotter: 'overlayfs', runtime: { name: 'io.containerd.berth.v1' } }),
        ),
      );
      expect(rt.code).toBe('ERR_INVALID_ARGUMENT');
      expect(rt.message).toContain('runtime name is immutable');
      expect((await store.get(A, 'c')).image).toBe('img:1');
    });

    it('applies labels.<k>, extensions.<k>, image, snapshotkey and spec paths one by one', async () => {
      const updated = await store.update(
        A,
        container('c', {
          labels: { change: 'new', added: 'yes' },
          extensions: {
            e2: { typeUrl: 't2b', value: Buffer.from('2b') },
            e3: { typeUrl: 't3', value: Buffer.from('3') },
          },
          image: 'img:3',
          snapshotKey: 'k3',
          snapshotter: 'ignored with paths',
        }),
        ['labels.change', 'labels.drop', 'labels.added', 'extensions.e2', 'extensions.e3', 'image'],
      );
      expect(updated.labels).toEqual({ keep: '1', change: 'new', added: 'yes' });
      expect(Object.keys(updated.extensions).sort()).toEqual(['e1', 'e2', 'e3']);
      expect(updated.extensions.e2!.value.toString()).toBe('2b');
      expect(updated.image).toBe('img:3');
      expect(updated.snapshotKey).toBe('k1');
      expect(updated.snapshotter).toBe('overlayfs');
      const again = await store.update(A, container('c', { snapshotKey: 'k9' }), [
        'snapshotkey',
        'extensions',
      ]);
      expect(again.snapshotKey).toBe('k9');
      expect(again.extensions).toEqual({});
    });

    it('rejects an unknown path, a missing id and a spec removed, changing nothing', async () => {
      const before = await store.get(A, 'c');
      const path = await errorOf(() => store.update(A, container('c'), ['runtime']));
      expect(path.code).toBe('ERR_INVALID_ARGUMENT');
      expect(path.message).toBe('cannot update "runtime" field on container "c"');
      const noSpec = await errorOf(() => store.update(A, container('c', { spec: undefined }), ['spec']));
      expect(noSpec.code).toBe('ERR_INVALID_ARGUMENT');
      expect(noSpec.message).toContain('spec must be set');
      const noId = await errorOf(() => store.update(A, container('')));
      expect(noId.code).toBe('ERR_INVALID_ARGUMENT');
      expect(await store.get(A, 'c')).toEqual(before);
    });
  });

  describe('garbage collection', () => {
    const hasSnapshot = (ctx: Context, key: string) =>
      sn.stat(ctx, key).then(
        () => true,
        () => false,
      );

    it('keeps its snapshot and what its labels reference until deleted', async () => {
      await sn.prepare(A, 'rootfs', '');
      await sn.prepare(A, 'other', '');
      const blob = await put(f.db.content!, A, 'checkpoint');
      await store.create(
        A,
        container('c', {
          snapshotter: 'overlayfs',
          snapshotKey: 'rootfs',
          labels: { 'containerd.io/gc.ref.content.cp': blob },
        }),
      );
      await f.db.collectGarbage();
      expect(await hasSnapshot(A, 'rootfs')).toBe(true);
      expect(await hasSnapshot(A, 'other')).toBe(false);
      expect((await f.db.content!.info(A, blob)).digest).toBe(blob);

      await store.delete(A, 'c');
      expect(f.db.dirtyCount).toBeGreaterThan(0);
      await f.db.collectGarbage();
      expect(await hasSnapshot(A, 'rootfs')).toBe(false);
      expect(mem.snapshots.size).toBe(0);
      expect((await errorOf(() => f.db.content!.info(A, blob))).code).toBe('ERR_NOT_FOUND');
    });

    it('lets go of the old snapshot when the snapshot key changes', async () => {
      await sn.prepare(A, 'one', '');
      await store.create(A, container('c', { snapshotter: 'overlayfs', snapshotKey: 'one' }));
      await f.db.collectGarbage();
      await sn.prepare(A, 'two', '');
      await store.update(A, container('c', { snapshotKey: 'two' }), ['snapshotkey']);
      expect(f.db.dirtyCount).toBe(1);
      await f.db.collectGarbage();
      expect(await hasSnapshot(A, 'one')).toBe(false);
      expect(await hasSnapshot(A, 'two')).toBe(true);
    });

    it('blocks deleting its namespace until removed', async () => {
      await store.create(B, container('c'));
      const err = await errorOf(() => f.db.namespaces.delete({}, 'b'));
      expect(err.code).toBe('ERR_FAILED_PRECONDITION');
      expect(err.message).toBe('namespace "b" must be empty, but it still has containers');
      await store.delete(B, 'c');
      await f.db.namespaces.delete({}, 'b');
      expect(await f.db.namespaces.list({})).toEqual([]);
    });
  });
});
