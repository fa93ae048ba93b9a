import BetterSqlite3 from 'better-sqlite3';
import { MIGRATIONS, type Migration, migrate, openMetadataDB, SCHEMA_VERSION } from '../src';
import { errorOf, type Fixture, fixture, ns, put } from './helpers';

describe('schema', () => {
  let f: Fixture;
  beforeEach(() => {
    f = fixture();
  });
  afterEach(() => f.cleanup());

  it('migrates an empty file to the current version, with WAL and foreign keys on', () => {
    expect(f.db.migration).toEqual({ from: 0, to: SCHEMA_VERSION });
    expect(f.db.schemaVersion).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(f.db.sql.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(f.db.sql.pragma('foreign_keys', { simple: true })).toBe(1);
    const tables = (
      f.db.sql.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as {
        name: string;
      }[]
    ).map((r) => r.name);
    expect(tables).toEqual(
      expect.arrayContaining([
        'namespaces',
        'namespace_labels',
        'content',
        'content_labels',
        'ingests',
        'leases',
        'lease_labels',
        'lease_resources',
      ]),
    );
  });

  it('keeps version and data when an existing file is reopened', async () => {
    const digest = await put(f.db.content!, ns('one'), 'kept across reopen', { labels: { a: 'b' } });
    await f.db.leases.create(ns('one'), { id: 'l1', labels: { x: 'y' } });
    await f.db.close();

    const again = f.open();
    expect(again.migration).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
    expect(again.schemaVersion).toBe(SCHEMA_VERSION);
    expect((await again.content!.info(ns('one'), digest)).labels).toEqual({ a: 'b' });
    expect((await again.leases.list(ns('one'))).map((l) => [l.id, l.labels])).toEqual([['l1', { x: 'y' }]]);
    expect(await again.namespaces.list({})).toEqual(['one']);
  });

  it('applies only the migrations a file has not seen', async () => {
    await f.db.close();
    const applied: number[] = [];
    const extra: Migration = {
      version: SCHEMA_VERSION + 1,
      description: 'test table',
      up(db) {
        applied.push(this.version);
        db.exec('CREATE TABLE extra (x INTEGER) STRICT');
      },
    };
    const db = f.open({ migrations: [...MIGRATIONS, extra] });
    expect(db.migration).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION + 1 });
    await db.close();
    const again = f.open({ migrations: [...MIGRATIONS, extra] });
    expect(again.migration.from).toBe(SCHEMA_VERSION + 1);
    expect(applied).toEqual([SCHEMA_VERSION + 1]);
  });

  it('rolls a failed migration back entirely: version and tables as before', async () => {
    await f.db.close();
    const failing: Migration = {
      version: SCHEMA_VERSION + 1,
      description: 'half done',
      up(db) {
        db.exec('CREATE TABLE half (x INTEGER)');
        throw new Error('disk on fire');
      },
    };
    const err = await errorOf(async () => f.open({ migrations: [...MIGRATIONS, failing] }));
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toContain('half done');
    expect(err.message).toContain('disk on fire');
    const raw = new BetterSqlite3(f.path);
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(raw.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'half'").get()).toBeUndefined();
    } finally {
      raw.close();
    }
  });

  it('a failure in the first migration leaves an empty file at version 0', () => {
    const raw = new BetterSqlite3(':memory:');
    try {
      const bad: Migration = {
        version: 1,
        description: 'broken',
        up(db) {
          db.exec('CREATE TABLE a (x INTEGER); CREATE TABLE a (y INTEGER);');
        },
      };
      expect(() => migrate(raw, [bad])).toThrow(/broken/);
      expect(raw.pragma('user_version', { simple: true })).toBe(0);
      expect(raw.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get()).toEqual({
        n: 0,
      });
    } finally {
      raw.close();
    }
  });

  it('refuses a file from a newer berth', async () => {
    await f.db.close();
    const raw = new BetterSqlite3(f.path);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
    raw.close();
    const err = await errorOf(async () => openMetadataDB(f.path));
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toContain(`version ${SCHEMA_VERSION + 5} is newer`);
  });

  it('refuses migrations out of order', () => {
    const raw = new BetterSqlite3(':memory:');
    try {
      expect(() => migrate(raw, [{ version: 2, description: 'skips one', up() {} }])).toThrow(
        /has version 2, expected 1/,
      );
    } finally {
      raw.close();
    }
  });

  it('is closed after close()', async () => {
    await f.db.close();
    const err = await errorOf(() => f.db.leases.create(ns('x'), { id: 'a' }));
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toContain('closed');
  });
});
