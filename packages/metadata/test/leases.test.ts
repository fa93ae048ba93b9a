import { LEASE_EXPIRE_LABEL } from '@berth/api';
import { parseExpiry } from '../src';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;

describe('leases', () => {
  let f: Fixture;
  beforeEach(() => {
    f = fixture();
  });
  afterEach(() => f.cleanup());

  it('creates, lists and deletes leases per namespace', async () => {
    const lm = f.db.leases;
    const l = await lm.create(ns('a'), { id: 'one', labels: { k: 'v', drop: '' } });
    expect(l.id).toBe('one');
    expect(l.labels).toEqual({ k: 'v' });
    expect(l.createdAt).toBeInstanceOf(Date);
    await lm.create(ns('b'), { id: 'one' });

    const listed = await lm.list(ns('a'));
    expect(listed).toEqual([{ id: 'one', labels: { k: 'v' }, createdAt: l.createdAt }]);
    await lm.delete(ns('a'), 'one');
    expect(await lm.list(ns('a'))).toEqual([]);
    expect((await lm.list(ns('b'))).map((x) => x.id)).toEqual(['one']);
  });

  it('generates an id when none is given', async () => {
    const l = await f.db.leases.create(ns('a'));
    expect(l.id).toMatch(/^\d+-[0-9a-f]{12}$/);
    expect((await f.db.leases.list(ns('a'))).map((x) => x.id)).toEqual([l.id]);
  });

  it('answers AlreadyExists, NotFound and InvalidArgument with the lease named', async () => {
    const lm = f.db.leases;
    await lm.create(ns('a'), { id: 'dup' });
    const dup = await errorOf(() => lm.create(ns('a'), { id: 'dup' }));
    expect(dup.code).toBe('ERR_ALREADY_EXISTS');
    expect(dup.message).toBe('lease "dup": already exists');

    const missing = await errorOf(() => lm.delete(ns('a'), 'nope'));
    expect(missing.code).toBe('ERR_NOT_FOUND');
    expect(missing.message).toBe('lease "nope": not found');

    const bad = await errorOf(() => lm.create(ns('a'), { id: 'bad id!' }));
    expect(bad.code).toBe('ERR_INVALID_ARGUMENT');
    expect(bad.message).toContain('"bad id!"');

    const badLabel = await errorOf(() => lm.create(ns('a'), { id: 'x', labels: { '': 'v' } }));
    expect(badLabel.code).toBe('ERR_INVALID_ARGUMENT');
    expect((await lm.list(ns('a'))).map((l) => l.id)).toEqual(['dup']);
  });

  it("accepts the random ids ctr makes (base64url, may end in '-' or '_'), as containerd", async () => {
    const lm = f.db.leases;
    for (const id of ['800890524-Seh_', '12-a-_b', '7--x']) {
      expect((await lm.create(ns('a'), { id })).id).toBe(id);
    }
    const err = await errorOf(() => lm.create(ns('a'), { id: 'x'.repeat(256) }));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('requires a namespace', async () => {
    const err = await errorOf(() => f.db.leases.create({}, { id: 'x' }));
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toContain('namespace is required');
    const err2 = await errorOf(() => f.db.leases.list({ namespace: 'bad/ns' }));
    expect(err2.code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('filters by id and labels', async () => {
    const lm = f.db.leases;
    await lm.create(ns('a'), { id: 'l1', labels: { role: 'pull', 'a.b': 'dotted' } });
    await lm.create(ns('a'), { id: 'l2', labels: { role: 'build' } });
    await lm.create(ns('a'), { id: 'l3' });
    const ids = async (...filters: string[]) => (await lm.list(ns('a'), filters)).map((l) => l.id).sort();
    expect(await ids('id==l2')).toEqual(['l2']);
    expect(await ids('labels.role==pull')).toEqual(['l1']);
    expect(await ids('labels.role')).toEqual(['l1', 'l2']);
    expect(await ids('labels.role!=pull')).toEqual(['l2', 'l3']);
    expect(await ids('labels."a.b"==dotted')).toEqual(['l1']);
    expect(await ids('id~=^l[13]$')).toEqual(['l1', 'l3']);
    expect(await ids('id==l1', 'id==l3')).toEqual(['l1', 'l3']);
    const err = await errorOf(() => lm.list(ns('a'), ['id==']));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('adds, lists and deletes resources, idempotently', async () => {
    const lm = f.db.leases;
    await lm.create(ns('a'), { id: 'l' });
    await lm.addResource(ns('a'), 'l', { type: 'content', id: D2 });
    await lm.addResource(ns('a'), 'l', { type: 'content', id: D1 });
    await lm.addResource(ns('a'), 'l', { type: 'content', id: D1 });
    await lm.addResource(ns('a'), 'l', { type: 'ingests', id: 'my-ref' });
    await lm.addResource(ns('a'), 'l', { type: 'snapshots/overlayfs', id: 'key-1' });
    expect(await lm.listResources(ns('a'), 'l')).toEqual([
      { type: 'content', id: D1 },
      { type: 'content', id: D2 },
      { type: 'ingests', id: 'my-ref' },
      { type: 'snapshots/overlayfs', id: 'key-1' },
    ]);
    await lm.deleteResource(ns('a'), 'l', { type: 'content', id: D1 });
    await lm.deleteResource(ns('a'), 'l', { type: 'content', id: D1 });
    expect(await lm.listResources(ns('a'), 'l')).toHaveLength(3);
    // Resources belong to the lease: they go with it.
    await lm.delete(ns('a'), 'l');
    await lm.create(ns('a'), { id: 'l' });
    expect(await lm.listResources(ns('a'), 'l')).toEqual([]);
  });

  it('validates resources and needs the lease to exist (in this namespace)', async () => {
    const lm = f.db.leases;
    await lm.create(ns('a'), { id: 'l' });
    const cases: [{ type: string; id: string }, RegExp][] = [
      [{ type: 'content', id: 'not-a-digest' }, /invalid content resource id "not-a-digest"/],
      [{ type: 'content', id: '' }, /id must not be empty/],
      [{ type: 'content/extra', id: D1 }, /invalid lease resource type "content\/extra"/],
      [{ type: 'snapshots', id: 'k' }, /want snapshots\/<snapshotter>/],
      [{ type: 'snapshots/bad name', id: 'k' }, /identifier "bad name"/],
      [{ type: 'images', id: 'x' }, /lease resource type "images" is not supported/],
    ];
    for (const [r, msg] of cases) {
      const err = await errorOf(() => lm.addResource(ns('a'), 'l', r));
      expect(err.code).toBe('ERR_INVALID_ARGUMENT');
      expect(err.message).toMatch(msg);
    }
    expect(await lm.listResources(ns('a'), 'l')).toEqual([]);

    for (const call of [
      () => lm.addResource(ns('b'), 'l', { type: 'content', id: D1 }),
      () => lm.deleteResource(ns('a'), 'ghost', { type: 'content', id: D1 }),
      () => lm.listResources(ns('a'), 'ghost'),
    ]) {
      const err = await errorOf(call);
      expect(err.code).toBe('ERR_NOT_FOUND');
    }
  });

  it('parses gc.expire as RFC 3339 and ignores anything else', () => {
    expect(parseExpiry('2030-01-02T03:04:05Z')?.toISOString()).toBe('2030-01-02T03:04:05.000Z');
    expect(parseExpiry('2030-01-02T03:04:05.5+02:00')?.toISOString()).toBe('2030-01-02T01:04:05.500Z');
    expect(parseExpiry('2030-01-02')).toBeUndefined();
    expect(parseExpiry('tomorrow')).toBeUndefined();
    expect(parseExpiry(undefined)).toBeUndefined();
  });

  it('GC removes expired leases (and what only they held), keeps the rest', async () => {
    const lm = f.db.leases;
    const past = new Date(Date.now() - 60_000).toISOString();
    const future = new Date(Date.now() + 3_600_000).toISOString();
    await lm.create(ns('a'), { id: 'expired', labels: { [LEASE_EXPIRE_LABEL]: past } });
    await lm.create(ns('a'), { id: 'later', labels: { [LEASE_EXPIRE_LABEL]: future } });
    await lm.create(ns('a'), { id: 'garbled', labels: { [LEASE_EXPIRE_LABEL]: 'soon' } });
    await lm.create(ns('a'), { id: 'forever' });
    const held = await put(f.db.content!, ns('a', 'expired'), 'held by the expired lease');

    const report = await f.db.collectGarbage();
    expect(report.removed).toEqual(
      expect.arrayContaining([
        { type: 'leases', namespace: 'a', id: 'expired' },
        { type: 'content', namespace: 'a', id: held },
      ]),
    );
    expect((await lm.list(ns('a'))).map((l) => l.id).sort()).toEqual(['forever', 'garbled', 'later']);
    expect(f.backing.blobs.has(held)).toBe(false);
  });

  it('delete with sync collects before returning', async () => {
    await f.db.leases.create(ns('a'), { id: 'l' });
    const d = await put(f.db.content!, ns('a', 'l'), 'leased bytes');
    await f.db.leases.delete(ns('a'), 'l', { sync: true });
    expect(f.backing.blobs.has(d)).toBe(false);
    expect((await errorOf(() => f.db.content!.info(ns('a'), d))).code).toBe('ERR_NOT_FOUND');
  });
});
