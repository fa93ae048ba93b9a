import { type ContainerInput, digestOf, NanoDate, nowNanos, SPEC_TYPE_URL, toNanos } from '@berth/api';
import BetterSqlite3 from 'better-sqlite3';
import { MIGRATIONS, migrate, openMetadataDB } from '../src';
import { type Fixture, fixture, ns, put } from './helpers';
import { MemorySnapshotter } from './memory-snapshotter';

const A = ns('a');
/** 2025-12-06T11:25:25.915261957Z: sub-millisecond digits a millisecond clock would drop. */
const PRECISE = 1_765_020_325_915_261_957n;

const container = (id: string): ContainerInput => ({
  id,
  labels: {},
  image: '',
  runtime: { name: 'io.containerd.runc.v2' },
  spec: { typeUrl: SPEC_TYPE_URL, value: Buffer.from('{}') },
  snapshotter: '',
  snapshotKey: '',
  extensions: {},
  sandbox: '',
});

/** pre < t < post on the process's nanosecond clock (strictly increasing, so strictly between). */
function expectBetween(t: Date, pre: bigint, post: bigint): void {
  expect(t).toBeInstanceOf(NanoDate);
  const n = toNanos(t);
  expect(n > pre && n < post).toBe(true);
}

describe('metadata times keep nanoseconds', () => {
  let f: Fixture;
  let mem: MemorySnapshotter;
  beforeEach(() => {
    mem = new MemorySnapshotter();
    f = fixture({ snapshotters: { overlayfs: mem } });
  });
  afterEach(() => f.cleanup());

  it('content: created at commit, updated after, read back exactly', async () => {
    const pre = nowNanos();
    const d = await put(f.db.content!, A, 'precise');
    const post = nowNanos();
    const info = await f.db.content!.info(A, d);
    expectBetween(info.createdAt, pre, post);
    expect(toNanos(info.updatedAt)).toBe(toNanos(info.createdAt));

    const updated = await f.db.content!.update(A, { digest: d, labels: { a: 'b' } }, ['labels.a']);
    expect(toNanos(updated.updatedAt) > toNanos(info.createdAt)).toBe(true);
    const again = await f.db.content!.info(A, d);
    expect(toNanos(again.updatedAt)).toBe(toNanos(updated.updatedAt));
    expect(toNanos(again.createdAt)).toBe(toNanos(info.createdAt));
    const walked: Date[] = [];
    await f.db.content!.walk(A, (i) => void walked.push(i.updatedAt));
    expect(walked.map(toNanos)).toEqual([toNanos(updated.updatedAt)]);
  });

  it('content: a stored time with sub-millisecond digits survives exactly', async () => {
    const d = await put(f.db.content!, A, 'stored');
    f.db.sql.prepare('UPDATE content SET created_at = ?, updated_at = ?').run(PRECISE, PRECISE + 1n);
    const info = await f.db.content!.info(A, d);
    expect(toNanos(info.createdAt)).toBe(PRECISE);
    expect(toNanos(info.updatedAt)).toBe(PRECISE + 1n);
  });

  it('images: create, update, get and list agree to the nanosecond', async () => {
    const target = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: digestOf('m'),
      size: 1,
    };
    const pre = nowNanos();
    const created = await f.db.images.create(A, { name: 'img', labels: {}, target });
    const post = nowNanos();
    expectBetween(created.createdAt, pre, post);
    const updated = await f.db.images.update(A, { name: 'img', labels: { x: 'y' }, target }, ['labels']);
    expect(toNanos(updated.updatedAt) > toNanos(created.createdAt)).toBe(true);
    expect(toNanos(updated.createdAt)).toBe(toNanos(created.createdAt));
    const got = await f.db.images.get(A, 'img');
    expect([toNanos(got.createdAt), toNanos(got.updatedAt)]).toEqual([
      toNanos(created.createdAt),
      toNanos(updated.updatedAt),
    ]);
    f.db.sql.prepare('UPDATE images SET updated_at = ?').run(PRECISE);
    expect(toNanos((await f.db.images.list(A))[0]!.updatedAt)).toBe(PRECISE);
  });

  it('containers: create, update, get and list agree to the nanosecond', async () => {
    const pre = nowNanos();
    const created = await f.db.containers.create(A, container('c1'));
    const post = nowNanos();
    expectBetween(created.createdAt, pre, post);
    const updated = await f.db.containers.update(A, { ...container('c1'), labels: { x: 'y' } }, ['labels']);
    expect(toNanos(updated.updatedAt) > toNanos(created.createdAt)).toBe(true);
    const got = await f.db.containers.get(A, 'c1');
    expect([toNanos(got.createdAt), toNanos(got.updatedAt)]).toEqual([
      toNanos(created.createdAt),
      toNanos(updated.updatedAt),
    ]);
    f.db.sql.prepare('UPDATE containers SET created_at = ?').run(PRECISE);
    expect(toNanos((await f.db.containers.list(A))[0]!.createdAt)).toBe(PRECISE);
  });

  it('leases: created at is exact and leases list in creation order', async () => {
    const pre = nowNanos();
    const l1 = await f.db.leases.create(A, { id: 'z-first' });
    const l2 = await f.db.leases.create(A, { id: 'a-second' });
    const post = nowNanos();
    expectBetween(l1.createdAt, pre, post);
    expect(toNanos(l2.createdAt) > toNanos(l1.createdAt)).toBe(true);
    const listed = await f.db.leases.list(A);
    expect(listed.map((l) => [l.id, toNanos(l.createdAt)])).toEqual([
      ['z-first', toNanos(l1.createdAt)],
      ['a-second', toNanos(l2.createdAt)],
    ]);
    // Order is numeric, not by the decimal text the times are read as: 9 digits sort before 19.
    f.db.sql.prepare("UPDATE leases SET created_at = 999999999 WHERE id = 'a-second'").run();
    expect((await f.db.leases.list(A)).map((l) => l.id)).toEqual(['a-second', 'z-first']);
  });

  it('snapshots: prepare, commit, update, stat agree to the nanosecond', async () => {
    const sn = f.db.snapshotter('overlayfs')!;
    const pre = nowNanos();
    await sn.prepare(A, 'active', '');
    const post = nowNanos();
    const active = await sn.stat(A, 'active');
    expectBetween(active.createdAt, pre, post);
    await sn.commit(A, 'layer', 'active');
    const committed = await sn.stat(A, 'layer');
    expect(toNanos(committed.createdAt) > post).toBe(true);
    const updated = await sn.update(A, { ...committed, labels: { x: 'y' } }, ['labels.x']);
    expect(toNanos(updated.updatedAt) > toNanos(committed.createdAt)).toBe(true);
    const again = await sn.stat(A, 'layer');
    expect([toNanos(again.createdAt), toNanos(again.updatedAt)]).toEqual([
      toNanos(committed.createdAt),
      toNanos(updated.updatedAt),
    ]);
  });
});

describe('schema v4: milliseconds become nanoseconds', () => {
  let f: Fixture;
  beforeEach(() => {
    f = fixture();
  });
  afterEach(() => f.cleanup());

  it('migrates every time of a version 3 file, keeping the instants', async () => {
    await f.db.close();
    const { rmSync } = await import('node:fs');
    rmSync(f.path);
    const ms = 1_765_020_325_915;
    const raw = new BetterSqlite3(f.path);
    migrate(raw, MIGRATIONS.slice(0, 3));
    const d = digestOf('old blob');
    raw.exec(`
      INSERT INTO namespaces (name, created_at) VALUES ('old', ${ms});
      INSERT INTO content (namespace, digest, size, created_at, updated_at) VALUES ('old', '${d}', 8, ${ms}, ${ms + 1});
      INSERT INTO ingests (namespace, ref, backing_ref, created_at, expires_at) VALUES ('old', 'r', 'old/1/r', ${ms}, ${ms + 2});
      INSERT INTO ingests (namespace, ref, backing_ref, created_at, expires_at) VALUES ('old', 'r2', 'old/2/r2', ${ms}, NULL);
      INSERT INTO leases (namespace, id, created_at) VALUES ('old', 'l', ${ms + 3});
      INSERT INTO images (namespace, name, target_media_type, target_digest, target_size, created_at, updated_at)
        VALUES ('old', 'img', 'application/vnd.oci.image.manifest.v1+json', '${d}', 8, ${ms + 4}, ${ms + 5});
      INSERT INTO containers (namespace, id, image, runtime_name, spec_type, spec, snapshotter, snapshot_key, sandbox,
        created_at, updated_at) VALUES ('old', 'c', '', 'io.containerd.runc.v2', '${SPEC_TYPE_URL}', x'7b7d', '', '', '', ${ms + 6}, ${ms + 7});
      INSERT INTO snapshots (namespace, snapshotter, key, backing_key, created_at, updated_at)
        VALUES ('old', 'overlayfs', 'k', 'overlayfs/1/k', ${ms + 8}, ${ms + 9});
    `);
    raw.close();

    const db = openMetadataDB(f.path, {
      gcSchedule: false,
      snapshotters: { overlayfs: new MemorySnapshotter() },
    });
    try {
      expect(db.migration).toEqual({ from: 3, to: MIGRATIONS.length });
      const O = ns('old');
      const at = (plus: number) => BigInt(ms + plus) * 1_000_000n;
      const lease = (await db.leases.list(O))[0]!;
      expect(toNanos(lease.createdAt)).toBe(at(3));
      const img = await db.images.get(O, 'img');
      expect([toNanos(img.createdAt), toNanos(img.updatedAt)]).toEqual([at(4), at(5)]);
      const c = await db.containers.get(O, 'c');
      expect([toNanos(c.createdAt), toNanos(c.updatedAt)]).toEqual([at(6), at(7)]);
      expect(c.createdAt.getTime()).toBe(ms + 6);
      const rows = db.sql
        .prepare(
          'SELECT CAST(created_at AS TEXT) AS c, CAST(updated_at AS TEXT) AS u FROM content UNION ALL ' +
            'SELECT CAST(created_at AS TEXT), CAST(expires_at AS TEXT) FROM ingests UNION ALL ' +
            'SELECT CAST(created_at AS TEXT), CAST(updated_at AS TEXT) FROM snapshots UNION ALL ' +
            'SELECT CAST(created_at AS TEXT), NULL FROM namespaces',
        )
        .all() as { c: string; u: string | null }[];
      expect(rows.map((r) => [BigInt(r.c), r.u === null ? null : BigInt(r.u)])).toEqual([
        [at(0), at(1)],
        [at(0), at(2)],
        [at(0), null],
        [at(8), at(9)],
        [at(0), null],
      ]);
    } finally {
      await db.close();
    }
  });
});
