import { type Context, type Digest, digestOf, type Image, type ImageStore } from '@berth/api';
import { GC_ROOT_LABEL } from '../src';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';

const A = ns('a');
const B = ns('b');
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

const image = (name: string, digest: Digest, more: Partial<ImageInput> = {}): ImageInput => ({
  name,
  labels: {},
  target: { mediaType: MANIFEST, digest, size: 100 },
  ...more,
});

describe('metadata images', () => {
  let f: Fixture;
  let store: ImageStore;
  const d1 = digestOf('one');
  const d2 = digestOf('two');

  beforeEach(() => {
    f = fixture();
    store = f.db.images;
  });
  afterEach(() => f.cleanup());

  const names = async (ctx: Context, filters?: string[]) =>
    (await store.list(ctx, filters)).map((i) => i.name);

  describe('records', () => {
    it('creates, gets and lists images sorted by name, each namespace its own', async () => {
      const before = Date.now();
      const created = await store.create(
        A,
        image('docker.io/library/b:1', d1, { labels: { team: 'x', dropped: '' } }),
      );
      expect(created.labels).toEqual({ team: 'x' });
      expect(created.createdAt.getTime()).toBeGreaterThanOrEqual(before);
      expect(created.updatedAt).toEqual(created.createdAt);
      await store.create(A, image('docker.io/library/a:1', d2));
      await store.create(B, image('docker.io/library/b:1', d2));

      expect(await names(A)).toEqual(['docker.io/library/a:1', 'docker.io/library/b:1']);
      expect(await names(B)).toEqual(['docker.io/library/b:1']);
      expect(await names(ns('c'))).toEqual([]);
      expect(await store.get(A, 'docker.io/library/b:1')).toEqual(created);
      expect((await store.get(B, 'docker.io/library/b:1')).target.digest).toBe(d2);
      expect(await f.db.namespaces.list({})).toEqual(['a', 'b']);
    });

    it('keeps the target media type, digest, size and annotations, and nothing else', async () => {
      await store.create(
        A,
        image('i', d1, {
          target: {
            mediaType: INDEX,
            digest: d1,
            size: 321,
            annotations: { 'org.opencontainers.image.ref.name': '1', empty: '' },
            urls: ['http://example.invalid/blob'],
            platform: { os: 'linux', architecture: 'amd64' },
          },
        }),
      );
      expect((await store.get(A, 'i')).target).toEqual({
        mediaType: INDEX,
        digest: d1,
        size: 321,
        annotations: { 'org.opencontainers.image.ref.name': '1' },
      });
    });

    it('answers AlreadyExists and NotFound naming the image', async () => {
      await store.create(A, image('dup', d1));
      const dup = await errorOf(() => store.create(A, image('dup', d2)));
      expect(dup.code).toBe('ERR_ALREADY_EXISTS');
      expect(dup.message).toBe('image "dup": already exists');
      expect((await store.get(A, 'dup')).target.digest).toBe(d1);

      for (const fn of [
        () => store.get(A, 'ghost'),
        () => store.update(A, image('ghost', d1)),
        () => store.delete(A, 'ghost'),
        () => store.get(B, 'dup'),
      ]) {
        const err = await errorOf(fn);
        expect(err.code).toBe('ERR_NOT_FOUND');
        expect(err.message).toMatch(/^image "(ghost|dup)": not found$/);
      }
    });

    it.each([
      ['an empty name', image('', digestOf('x')), 'image name must not be empty'],
      ['a bad digest', image('i', 'sha256:xyz'), 'image "i": target digest "sha256:xyz" invalid'],
      ['no digest', image('i', ''), 'image "i": target digest "" invalid'],
      [
        'a zero size',
        image('i', digestOf('x'), { target: { mediaType: MANIFEST, digest: digestOf('x'), size: 0 } }),
        'image "i": target size must be greater than zero, got 0',
      ],
      [
        'no media type',
        image('i', digestOf('x'), { target: { mediaType: '', digest: digestOf('x'), size: 1 } }),
        'image "i": target media type must be set',
      ],
      [
        'an oversized label',
        image('i', digestOf('x'), { labels: { k: 'v'.repeat(5000) } }),
        'label key and value greater than maximum size',
      ],
      ['no target', { name: 'i', labels: {} } as unknown as ImageInput, 'image "i": target must be set'],
    ])('rejects %s as InvalidArgument, storing nothing', async (_what, input, message) => {
      const err = await errorOf(() => store.create(A, input));
      expect(err.code).toBe('ERR_INVALID_ARGUMENT');
      expect(err.message).toContain(message);
      expect(await names(A)).toEqual([]);
    });

    it('requires a namespace', async () => {
      const err = await errorOf(() => store.list({}));
      expect(err.code).toBe('ERR_FAILED_PRECONDITION');
      expect(err.message).toBe('namespace is required');
      expect((await errorOf(() => store.create({}, image('i', d1)))).code).toBe('ERR_FAILED_PRECONDITION');
    });

    it('keeps images across reopening the file', async () => {
      await store.create(A, image('kept', d1, { labels: { a: 'b' } }));
      await f.db.close();
      const again = f.open();
      const got = await again.images.get(A, 'kept');
      expect(got.labels).toEqual({ a: 'b' });
      expect(got.target).toEqual({ mediaType: MANIFEST, digest: d1, size: 100 });
    });
  });

  describe('filters', () => {
    beforeEach(async () => {
      await store.create(A, image('docker.io/library/busybox:latest', d1, { labels: { env: 'prod' } }));
      await store.create(
        A,
        image('docker.io/library/alpine:3', d2, {
          labels: { env: 'dev', 'dotted.key': 'v' },
          target: { mediaType: INDEX, digest: d2, size: 5, annotations: { note: 'x' } },
        }),
      );
      await store.create(A, image('localhost:5000/app:1', d1));
    });

    it.each([
      [['name==docker.io/library/busybox:latest'], ['docker.io/library/busybox:latest']],
      [['name~=^docker.io/'], ['docker.io/library/alpine:3', 'docker.io/library/busybox:latest']],
      [[`target.digest==${digestOf('two')}`], ['docker.io/library/alpine:3']],
      [[`target.mediatype==${INDEX}`], ['docker.io/library/alpine:3']],
      [['labels.env'], ['docker.io/library/alpine:3', 'docker.io/library/busybox:latest']],
      [['labels.env==prod'], ['docker.io/library/busybox:latest']],
      [['labels."dotted.key"==v'], ['docker.io/library/alpine:3']],
      [['annotations.note==x'], ['docker.io/library/alpine:3']],
      [
        ['labels.env==prod', 'name~=app'],
        ['docker.io/library/busybox:latest', 'localhost:5000/app:1'],
      ],
      [['labels.env!=prod'], ['docker.io/library/alpine:3', 'localhost:5000/app:1']],
      [['name==x,labels.env==prod'], []],
      [['nosuchfield==1'], []],
      [[], ['docker.io/library/alpine:3', 'docker.io/library/busybox:latest', 'localhost:5000/app:1']],
    ])('%j selects %j', async (filters, want) => {
      expect(await names(A, filters)).toEqual(want);
    });

    it('rejects a malformed filter as InvalidArgument', async () => {
      const err = await errorOf(() => store.list(A, ['name==']));
      expect(err.code).toBe('ERR_INVALID_ARGUMENT');
      expect(err.message).toContain('invalid filter "name=="');
    });
  });

  describe('update', () => {
    beforeEach(async () => {
      await store.create(
        A,
        image('i', d1, {
          labels: { keep: '1', change: 'old', drop: 'x' },
          target: { mediaType: MANIFEST, digest: d1, size: 100, annotations: { a1: 'v1' } },
        }),
      );
    });

    it('replaces the whole record when no field paths are given, keeping createdAt', async () => {
      const before = await store.get(A, 'i');
      const updated = await store.update(A, image('i', d2, { labels: { only: 'this' } }));
      expect(updated.labels).toEqual({ only: 'this' });
      expect(updated.target).toEqual({ mediaType: MANIFEST, digest: d2, size: 100 });
      expect(updated.createdAt).toEqual(before.createdAt);
      expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(before.updatedAt.getTime());
      expect(await store.get(A, 'i')).toEqual(updated);
    });

    it('sets and removes single labels with labels.<key>, leaving the rest', async () => {
      const updated = await store.update(
        A,
        { name: 'i', labels: { change: 'new', added: 'yes' }, target: undefined as never },
        ['labels.change', 'labels.drop', 'labels.added'],
      );
      expect(updated.labels).toEqual({ keep: '1', change: 'new', added: 'yes' });
      expect(updated.target.digest).toBe(d1);
    });

    it('replaces all labels with `labels`, and the target as a unit with `target`', async () => {
      const updated = await store.update(A, image('i', d2, { labels: { fresh: '1' } }), ['labels', 'target']);
      expect(updated.labels).toEqual({ fresh: '1' });
      expect(updated.target).toEqual({ mediaType: MANIFEST, digest: d2, size: 100 });
    });

    it('updates annotations of the target with annotations and annotations.<key>', async () => {
      const one = await store.update(
        A,
        image('i', d2, { target: { mediaType: MANIFEST, digest: d2, size: 1, annotations: { a2: 'v2' } } }),
        ['annotations.a2'],
      );
      expect(one.target).toEqual({
        mediaType: MANIFEST,
        digest: d1,
        size: 100,
        annotations: { a1: 'v1', a2: 'v2' },
      });
      const all = await store.update(A, image('i', d2), ['annotations']);
      expect(all.target).toEqual({ mediaType: MANIFEST, digest: d1, size: 100 });
    });

    it('rejects unknown field paths and invalid results, changing nothing', async () => {
      const before = await store.get(A, 'i');
      const bad = await errorOf(() => store.update(A, image('i', d2), ['labels.keep', 'name']));
      expect(bad.code).toBe('ERR_INVALID_ARGUMENT');
      expect(bad.message).toBe('cannot update "name" field on image "i"');
      const invalid = await errorOf(() => store.update(A, image('i', 'sha256:nope'), ['target']));
      expect(invalid.code).toBe('ERR_INVALID_ARGUMENT');
      expect(invalid.message).toContain('target digest "sha256:nope" invalid');
      const noName = await errorOf(() => store.update(A, image('', d1)));
      expect(noName.code).toBe('ERR_INVALID_ARGUMENT');
      expect(await store.get(A, 'i')).toEqual(before);
    });
  });

  describe('garbage collection', () => {
    const has = (ctx: Context, d: Digest) =>
      f.db.content!.info(ctx, d).then(
        () => true,
        () => false,
      );

    it('keeps the target and what the image gc.ref labels name; frees them after delete', async () => {
      const layer = await put(f.db.content!, A, 'layer');
      const config = await put(f.db.content!, A, 'config');
      const manifest = await put(f.db.content!, A, 'manifest', {
        labels: { 'containerd.io/gc.ref.content.l.0': layer },
      });
      const extra = await put(f.db.content!, A, 'referenced by an image label');
      const stray = await put(f.db.content!, A, 'stray');
      await store.create(
        A,
        image('img', manifest, { labels: { 'containerd.io/gc.ref.content.extra': extra } }),
      );
      // The same digests in another namespace are not held by A's image.
      await put(f.db.content!, B, 'manifest');

      await f.db.collectGarbage();
      expect(await has(A, manifest)).toBe(true);
      expect(await has(A, layer)).toBe(true);
      expect(await has(A, extra)).toBe(true);
      expect(await has(A, config)).toBe(false);
      expect(await has(A, stray)).toBe(false);
      expect(await has(B, manifest)).toBe(false);
      expect(f.backing.blobs.has(manifest)).toBe(true);

      await store.delete(A, 'img');
      expect(f.db.dirtyCount).toBeGreaterThan(0);
      const report = await f.db.collectGarbage();
      expect(await has(A, manifest)).toBe(false);
      expect(await has(A, layer)).toBe(false);
      expect(f.backing.blobs.size).toBe(0);
      expect(report.bytes).toBe('manifest'.length + 'layer'.length + 'referenced by an image label'.length);
    });

    it('delete with sync collects before returning', async () => {
      const target = await put(f.db.content!, A, 'target');
      await store.create(A, image('img', target));
      await store.delete(A, 'img', { sync: true });
      expect(await has(A, target)).toBe(false);
      expect(f.backing.blobs.has(target)).toBe(false);
      expect(f.db.dirtyCount).toBe(0);
    });

    it('marks the store dirty when an update lets go of a target, not for a label change', async () => {
      const t1 = await put(f.db.content!, A, 't1');
      await store.create(A, image('img', t1));
      await f.db.collectGarbage();
      const t2 = await put(f.db.content!, A, 't2');
      await store.update(A, image('img', t1, { labels: { a: 'b' } }), ['labels']);
      expect(f.db.dirtyCount).toBe(0);
      await store.update(A, image('img', t2), ['target']);
      expect(f.db.dirtyCount).toBe(1);
      await f.db.collectGarbage();
      expect(await has(A, t1)).toBe(false);
      expect(await has(A, t2)).toBe(true);
    });

    it("blocks deleting its namespace, named in containerd's order", async () => {
      await put(f.db.content!, A, 'blob', { labels: { [GC_ROOT_LABEL]: 'x' } });
      await store.create(A, image('img', d1));
      await f.db.containers.create(A, {
        id: 'c',
        labels: {},
        image: '',
        runtime: { name: 'io.containerd.runc.v2' },
        spec: { typeUrl: 'x', value: Buffer.alloc(0) },
        snapshotter: '',
        snapshotKey: '',
        extensions: {},
        sandbox: '',
      });
      const err = await errorOf(() => f.db.namespaces.delete({}, 'a'));
      expect(err.code).toBe('ERR_FAILED_PRECONDITION');
      expect(err.message).toBe('namespace "a" must be empty, but it still has images, blobs, containers');
      await store.delete(A, 'img');
      const err2 = await errorOf(() => f.db.namespaces.delete({}, 'a'));
      expect(err2.message).toBe('namespace "a" must be empty, but it still has blobs, containers');
    });
  });
});
