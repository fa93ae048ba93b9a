import { errorOf, type Fixture, fixture, ns, put } from './helpers';

describe('namespaces', () => {
  let f: Fixture;
  beforeEach(() => {
    f = fixture();
  });
  afterEach(() => f.cleanup());

  it('creates, lists (sorted) and reads labels', async () => {
    const store = f.db.namespaces;
    await store.create({}, 'zeta');
    await store.create({}, 'alpha', { team: 'a', empty: '' });
    expect(await store.list({})).toEqual(['alpha', 'zeta']);
    expect(await store.labels({}, 'alpha')).toEqual({ team: 'a' });
    expect(await store.labels({}, 'zeta')).toEqual({});
  });

  it('answers AlreadyExists for a second create, naming the namespace', async () => {
    await f.db.namespaces.create({}, 'dup');
    const err = await errorOf(() => f.db.namespaces.create({}, 'dup', { a: 'b' }));
    expect(err.code).toBe('ERR_ALREADY_EXISTS');
    expect(err.message).toBe('namespace "dup": already exists');
    expect(await f.db.namespaces.labels({}, 'dup')).toEqual({});
  });

  it.each([
    ['', 'must not be empty'],
    ['has space', 'must match'],
    ['-lead', 'must match'],
    ['a'.repeat(77), 'maximum length'],
  ])('rejects the invalid name %j', async (name, why) => {
    const err = await errorOf(() => f.db.namespaces.create({}, name));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    expect(err.message).toContain(why);
    expect(await f.db.namespaces.list({})).toEqual([]);
  });

  it('rejects oversized labels without creating anything', async () => {
    const err = await errorOf(() => f.db.namespaces.create({}, 'big', { k: 'v'.repeat(5000) }));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    expect(await f.db.namespaces.list({})).toEqual([]);
  });

  it('sets, replaces and deletes (empty value) one label', async () => {
    const store = f.db.namespaces;
    await store.create({}, 'n', { a: '1', b: '2' });
    await store.setLabel({}, 'n', 'a', 'one');
    await store.setLabel({}, 'n', 'b', '');
    await store.setLabel({}, 'n', 'c', '3');
    expect(await store.labels({}, 'n')).toEqual({ a: 'one', c: '3' });
    const err = await errorOf(() => store.setLabel({}, 'n', '', 'x'));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('setLabel creates a missing namespace, as containerd', async () => {
    await f.db.namespaces.setLabel({}, 'fresh', 'k', 'v');
    expect(await f.db.namespaces.list({})).toEqual(['fresh']);
    expect(await f.db.namespaces.labels({}, 'fresh')).toEqual({ k: 'v' });
  });

  it('labels and delete of a missing namespace are NotFound', async () => {
    const e1 = await errorOf(() => f.db.namespaces.labels({}, 'ghost'));
    expect(e1.code).toBe('ERR_NOT_FOUND');
    expect(e1.message).toBe('namespace "ghost": not found');
    const e2 = await errorOf(() => f.db.namespaces.delete({}, 'ghost'));
    expect(e2.code).toBe('ERR_NOT_FOUND');
  });

  it('deletes an empty namespace with its labels', async () => {
    await f.db.namespaces.create({}, 'gone', { a: 'b' });
    await f.db.namespaces.delete({}, 'gone');
    expect(await f.db.namespaces.list({})).toEqual([]);
    await f.db.namespaces.create({}, 'gone');
    expect(await f.db.namespaces.labels({}, 'gone')).toEqual({});
  });

  it('writing content or a lease creates the namespace implicitly', async () => {
    await put(f.db.content!, ns('by-content'), 'x');
    await f.db.leases.create(ns('by-lease'), { id: 'l' });
    expect(await f.db.namespaces.list({})).toEqual(['by-content', 'by-lease']);
  });

  it('refuses to delete a namespace that still has blobs, as containerd words it', async () => {
    const ctx = ns('busy');
    const digest = await put(f.db.content!, ctx, 'held');
    const err = await errorOf(() => f.db.namespaces.delete({}, 'busy'));
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toBe('namespace "busy" must be empty, but it still has blobs');
    expect(await f.db.namespaces.list({})).toEqual(['busy']);
    await f.db.content!.delete(ctx, digest);
    await f.db.namespaces.delete({}, 'busy');
    expect(await f.db.namespaces.list({})).toEqual([]);
  });

  it("deletes a namespace's leases and ingests with it, as containerd does", async () => {
    const ctx = ns('transient');
    await f.db.leases.create(ctx, { id: 'l' });
    const w = await f.db.content!.writer(ctx, { ref: 'open' });
    await w.write(Buffer.from('partial'));
    await w.close();
    await f.db.namespaces.delete({}, 'transient');
    expect(await f.db.namespaces.list({})).toEqual([]);
    // Recreated, the namespace starts empty: nothing of the old one shows through.
    await f.db.namespaces.create({}, 'transient');
    expect(await f.db.leases.list(ctx)).toEqual([]);
    expect(await f.db.content!.listStatuses(ctx)).toEqual([]);
    await expect(f.db.content!.status(ctx, 'open')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('lets later resource kinds block namespace delete too', async () => {
    await f.db.namespaces.create({}, 'snaps');
    f.db.registerResourceKind({
      type: 'snapshots',
      inUse: (n) => (n === 'snaps' ? 'snapshots on "overlayfs" snapshotter' : undefined),
      roots: () => [],
      references: () => [],
      all: () => [],
      remove() {},
    });
    const err = await errorOf(() => f.db.namespaces.delete({}, 'snaps'));
    expect(err.message).toBe(
      'namespace "snaps" must be empty, but it still has snapshots on "overlayfs" snapshotter',
    );
    expect(() =>
      f.db.registerResourceKind({
        type: 'snapshots',
        roots: () => [],
        references: () => [],
        all: () => [],
        remove() {},
      }),
    ).toThrow(/already registered/);
  });
});
