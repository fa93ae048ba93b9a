import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nowNanos, toNanos } from '@berth/api';
import { MetaStore } from '@berth/snapshotter';
import BetterSqlite3 from 'better-sqlite3';
import { MIGRATIONS } from '../src/metastore';

describe('MetaStore', () => {
  let dir: string;
  let ms: MetaStore;
  const usage = { size: 4096, inodes: 1 };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapshot-metastore-'));
    ms = new MetaStore(join(dir, 'metadata.db'));
  });
  afterEach(async () => {
    ms.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('times keep nanoseconds: created, committed and updated in order, read back exactly', () => {
    const pre = nowNanos();
    ms.create('active', 'k', '', undefined);
    const post = nowNanos();
    const active = ms.info('k');
    expect(toNanos(active.createdAt) > pre && toNanos(active.createdAt) < post).toBe(true);
    expect(toNanos(active.updatedAt)).toBe(toNanos(active.createdAt));
    ms.commit('c', 'k', undefined, usage);
    const committed = ms.info('c');
    expect(toNanos(committed.createdAt) > post).toBe(true);
    const updated = ms.update({ name: 'c', labels: { a: 'b' } });
    expect(toNanos(updated.updatedAt) > toNanos(committed.createdAt)).toBe(true);
    ms.close();
    ms = new MetaStore(join(dir, 'metadata.db'));
    const again = ms.info('c');
    expect([toNanos(again.createdAt), toNanos(again.updatedAt)]).toEqual([
      toNanos(committed.createdAt),
      toNanos(updated.updatedAt),
    ]);
    expect(toNanos(ms.list()[0]!.info.updatedAt)).toBe(toNanos(updated.updatedAt));
  });

  test('schema 2 turns version 1 milliseconds into nanoseconds, keeping the instants', () => {
    ms.close();
    const path = join(dir, 'v1.db');
    const raw = new BetterSqlite3(path);
    MIGRATIONS[0]!.up(raw);
    raw.pragma('user_version = 1');
    raw
      .prepare("INSERT INTO snapshots (key, kind, created_at, updated_at) VALUES ('old', 'committed', ?, ?)")
      .run(1_765_020_325_915, 1_765_020_325_916);
    raw.close();
    ms = new MetaStore(path);
    expect(ms.schemaVersion).toBe(2);
    const info = ms.info('old');
    expect([toNanos(info.createdAt), toNanos(info.updatedAt)]).toEqual([
      1_765_020_325_915_000_000n,
      1_765_020_325_916_000_000n,
    ]);
    ms.close();
    // A stored time with sub-millisecond digits (past 2^53) comes back exactly.
    const again = new BetterSqlite3(path);
    again.prepare("UPDATE snapshots SET updated_at = 1765020325915261957 WHERE key = 'old'").run();
    again.close();
    ms = new MetaStore(path);
    expect(toNanos(ms.info('old').updatedAt)).toBe(1_765_020_325_915_261_957n);
  });

  /** committed chain c1 <- c2 <- c3, returning their ids */
  function chain(n: number): string[] {
    const ids: string[] = [];
    let parent = '';
    for (let i = 1; i <= n; i++) {
      ids.push(ms.create('active', `c${i}-a`, parent, undefined).id);
      ms.commit(`c${i}`, `c${i}-a`, undefined, usage);
      parent = `c${i}`;
    }
    return ids;
  }

  test('a new file is at the latest schema version; a newer version is refused', () => {
    expect(ms.schemaVersion).toBe(MIGRATIONS.length);
    ms.close();
    const raw = new BetterSqlite3(join(dir, 'metadata.db'));
    raw.pragma('user_version = 99');
    raw.close();
    expect(() => new MetaStore(join(dir, 'metadata.db'))).toThrow(
      expect.objectContaining({ code: 'ERR_FAILED_PRECONDITION', message: expect.stringContaining('99') }),
    );
    ms = new MetaStore(join(dir, 'other.db'));
  });

  test('parent chains are nearest first and keep the id through commit', () => {
    const ids = chain(3);
    const s = ms.create('active', 'top', 'c3', { a: '1' });
    expect(s.parentIds).toEqual([...ids].reverse());
    expect(ms.get('c3').id).toBe(ids[2]);
    expect(ms.mountable('top')).toEqual({ id: s.id, kind: 'active', parentIds: [...ids].reverse() });
    const info = ms.info('top');
    expect(info).toMatchObject({ kind: 'active', name: 'top', parent: 'c3', labels: { a: '1' } });
    expect(info.createdAt.getTime()).toBe(info.updatedAt.getTime());
  });

  test('commit records usage, replaces labels and frees the key', () => {
    const id = ms.create('active', 'k', '', { old: 'x' }).id;
    expect(ms.commit('n', 'k', { fresh: 'y' }, { size: 8192, inodes: 3 })).toBe(id);
    expect(ms.get('n')).toMatchObject({
      id,
      usage: { size: 8192, inodes: 3 },
      info: { labels: { fresh: 'y' } },
    });
    expect(() => ms.info('k')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND', message: 'snapshot k does not exist' }),
    );
    ms.create('view', 'k', 'n', undefined);
  });

  test('commit checks the id the caller measured', () => {
    const id = ms.create('active', 'k', '', undefined).id;
    ms.remove('k');
    ms.create('active', 'k', '', undefined);
    expect(() => ms.commit('n', 'k', undefined, usage, id)).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
  });

  test('create checks the parent chain the caller prepared files for', () => {
    chain(1);
    const expected = ms.resolveParent('c1');
    ms.remove('c1');
    chain(1); // same name, new id
    expect(() => ms.create('active', 'x', 'c1', undefined, expected)).toThrow(
      expect.objectContaining({ code: 'ERR_FAILED_PRECONDITION' }),
    );
    expect(() => ms.info('x')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
  });

  test('ids are never reused, even after the newest snapshot is removed', () => {
    const a = ms.create('active', 'a', '', undefined).id;
    ms.remove('a');
    const b = ms.create('active', 'b', '', undefined).id;
    expect(Number(b)).toBeGreaterThan(Number(a));
    ms.close();
    ms = new MetaStore(join(dir, 'metadata.db'));
    ms.remove('b');
    expect(Number(ms.create('active', 'c', '', undefined).id)).toBeGreaterThan(Number(b));
  });

  test('errors name the snapshot and carry the containerd codes', () => {
    chain(1);
    ms.create('active', 'act', 'c1', undefined);
    ms.create('view', 'vw', '', undefined);
    const cases: [() => unknown, string, string][] = [
      [
        () => ms.create('active', 'x', 'nope', undefined),
        'ERR_NOT_FOUND',
        'parent snapshot nope does not exist',
      ],
      [
        () => ms.create('active', 'x', 'act', undefined),
        'ERR_INVALID_ARGUMENT',
        'parent "act" is not committed snapshot',
      ],
      [
        () => ms.create('view', 'x', 'vw', undefined),
        'ERR_INVALID_ARGUMENT',
        'parent "vw" is not committed snapshot',
      ],
      [() => ms.create('active', 'act', '', undefined), 'ERR_ALREADY_EXISTS', 'snapshot act already exists'],
      [
        () => ms.create('active', '', '', undefined),
        'ERR_INVALID_ARGUMENT',
        'snapshot key must not be empty',
      ],
      [
        () => ms.commit('c1', 'act', undefined, usage),
        'ERR_ALREADY_EXISTS',
        'committed snapshot c1 already exists',
      ],
      [() => ms.commit('n', 'vw', undefined, usage), 'ERR_FAILED_PRECONDITION', 'snapshot vw is not active'],
      [
        () => ms.commit('', 'act', undefined, usage),
        'ERR_INVALID_ARGUMENT',
        'snapshot name must not be empty',
      ],
      [() => ms.remove('c1'), 'ERR_FAILED_PRECONDITION', 'cannot remove snapshot c1 with child'],
      [() => ms.remove('gone'), 'ERR_NOT_FOUND', 'snapshot gone does not exist'],
      [() => ms.mountable('c1'), 'ERR_FAILED_PRECONDITION', 'requested snapshot c1 not active or view'],
      [
        () => ms.update({ name: 'c1', labels: {} }, ['name']),
        'ERR_INVALID_ARGUMENT',
        'cannot update "name" field on snapshot "c1"',
      ],
      [
        () => ms.create('active', 'x', '', { k: 'v'.repeat(5000) }),
        'ERR_INVALID_ARGUMENT',
        'label key and value greater than maximum size (4096 bytes), key: "k"',
      ],
    ];
    for (const [fn, code, message] of cases) {
      expect(fn).toThrow(expect.objectContaining({ code, message }));
    }
    // nothing a failing call touched changed
    expect(ms.list().map((e) => e.info.name)).toEqual(['act', 'c1', 'vw']);
  });

  test('update applies field paths and drops emptied labels', () => {
    ms.create('active', 'k', '', { a: '1', b: '2', c: '3' });
    expect(ms.update({ name: 'k', labels: { a: 'x', b: '' } }, ['labels.a', 'labels.b']).labels).toEqual({
      a: 'x',
      c: '3',
    });
    expect(ms.update({ name: 'k', labels: { z: '9', y: '' } }).labels).toEqual({ z: '9' });
    expect(ms.update({ name: 'k', labels: { q: '1' } }, ['labels']).labels).toEqual({ q: '1' });
    expect(ms.info('k').labels).toEqual({ q: '1' });
  });

  test('list filters on kind, name, parent and labels', () => {
    chain(1);
    ms.create('active', 'a', 'c1', { tier: 'gold' });
    ms.create('view', 'v', 'c1', undefined);
    ms.create('active', 'solo', '', { tier: 'tin' });
    const names = (f?: string[]) => ms.list(f).map((e) => e.info.name);
    expect(names()).toEqual(['a', 'c1', 'solo', 'v']);
    expect(names(['kind==view'])).toEqual(['v']);
    expect(names(['parent==c1'])).toEqual(['a', 'v']);
    expect(names(['parent==""'])).toEqual(['c1', 'solo']);
    expect(names(['labels.tier'])).toEqual(['a', 'solo']);
    expect(names(['labels.tier==gold', 'name==c1'])).toEqual(['a', 'c1']);
    expect(names(['labels.tier~=^t'])).toEqual(['solo']);
    expect(() => ms.list(['kind=='])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  test('a closed store refuses work and closes twice', () => {
    ms.close();
    ms.close();
    expect(() => ms.info('x')).toThrow(expect.objectContaining({ code: 'ERR_UNAVAILABLE' }));
    expect(() => ms.write(() => 1)).toThrow(expect.objectContaining({ code: 'ERR_UNAVAILABLE' }));
  });
});
