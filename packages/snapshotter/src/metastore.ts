import {
  AlreadyExistsError,
  applyLabelPaths,
  FailedPreconditionError,
  InvalidArgumentError,
  type Labels,
  NanoDate,
  NotFoundError,
  noSpaceError,
  nowNanos,
  parseFilters,
  retryOnFullDisk,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotUsage,
  SpaceReserve,
  snapshotField,
  UnavailableError,
  validateLabels,
} from '@berth/api';
import type { Database, Statement } from 'better-sqlite3';
import BetterSqlite3 from 'better-sqlite3';

/**
 * A snapshotter's own record of its snapshots (containerd keeps a bolt file per
 * snapshotter; we keep one SQLite file). The numeric id names the snapshot's
 * directory and never changes, not even on commit, and is never reused
 * (AUTOINCREMENT), so a directory left behind by a crash can never be mistaken for a
 * newer snapshot.
 *
 * Schema v1 (`PRAGMA user_version` holds the version):
 *
 *   snapshots(id INTEGER PK AUTOINCREMENT, key TEXT UNIQUE, kind 'active'|'view'|'committed',
 *             parent_id -> snapshots.id (only committed snapshots are parents),
 *             labels TEXT (JSON object), created_at, updated_at (ms since the epoch),
 *             size, inodes (usage recorded at commit))
 *
 * Schema v2: created_at and updated_at are nanoseconds since the epoch (containerd keeps
 * nanoseconds; its clients compare them with their own clocks). An INTEGER holds them
 * exactly until 2262; they pass 2^53, so they are bound as BigInt and read as decimal
 * text (`CAST(... AS TEXT)`), which keeps the other integers of a row plain numbers
 * (better-sqlite3's safeIntegers would turn them all into BigInts).
 */
export interface Migration {
  version: number;
  up(db: Database): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    up(db) {
      db.exec(`
        CREATE TABLE snapshots (
          id         INTEGER PRIMARY KEY AUTOINCREMENT,
          key        TEXT NOT NULL UNIQUE,
          kind       TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
          parent_id  INTEGER REFERENCES snapshots(id),
          labels     TEXT NOT NULL DEFAULT '{}',
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          size       INTEGER NOT NULL DEFAULT 0,
          inodes     INTEGER NOT NULL DEFAULT 0
        ) STRICT;
        CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
      `);
    },
  },
  {
    version: 2,
    up(db) {
      db.exec('UPDATE snapshots SET created_at = created_at * 1000000, updated_at = updated_at * 1000000');
    },
  },
];

/** What a snapshotter needs to lay out and mount a snapshot. */
export interface StoredSnapshot {
  /** Decimal id: the directory name. */
  id: string;
  kind: SnapshotKind;
  /** Ids of the committed ancestors, nearest first. */
  parentIds: string[];
}

interface Row {
  id: number;
  key: string;
  kind: SnapshotKind;
  parent_id: number | null;
  parent_key: string | null;
  labels: string;
  /** Nanoseconds since the epoch, as decimal text. */
  created_at: string;
  updated_at: string;
  size: number;
  inodes: number;
}

const SELECT = `SELECT s.id, s.key, s.kind, s.parent_id, p.key AS parent_key, s.labels,
  CAST(s.created_at AS TEXT) AS created_at, CAST(s.updated_at AS TEXT) AS updated_at, s.size, s.inodes
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

const UPDATABLE_FIELDS = 'labels';

function toInfo(row: Row): SnapshotInfo {
  return {
    kind: row.kind,
    name: row.key,
    parent: row.parent_key ?? '',
    labels: JSON.parse(row.labels) as Labels,
    createdAt: new NanoDate(BigInt(row.created_at)),
    updatedAt: new NanoDate(BigInt(row.updated_at)),
  };
}

export function validateKey(key: string, what = 'key'): void {
  if (typeof key !== 'string' || key === '')
    throw new InvalidArgumentError(`snapshot ${what} must not be empty`);
}

/** The metastore's file and its space reserve, in a snapshotter's root. */
export const METADATA_FILE = 'metadata.db';
export const RESERVE_FILE = `${METADATA_FILE}.reserve`;

export class MetaStore {
  private readonly db: Database;
  private readonly statements = new Map<string, Statement>();
  private closed = false;
  /**
   * Room kept so that a remove commits on a full disk (`<path>.reserve`): freed by
   * `freeSpace()`, made again by `restoreReserve()` (see the README, "A full disk").
   */
  readonly reserve: SpaceReserve;

  constructor(
    readonly path: string,
    reserveBytes = 1 << 20,
  ) {
    this.reserve = new SpaceReserve(`${path}.reserve`, reserveBytes);
    this.db = new BetterSqlite3(path, { timeout: 5000 });
    try {
      // One process owns the file (as containerd's bolt), and the WAL index lives in memory:
      // a mmapped -shm page first touched on a full disk is a SIGBUS, not an error.
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('foreign_keys = ON');
      // FULL: a committed snapshot survives a power cut once commit() returns.
      this.db.pragma('synchronous = FULL');
      // Must work on a full disk, or the snapshotter (and the daemon) cannot start to free it.
      retryOnFullDisk(`snapshot metadata migration`, () => this.migrate(), {
        path,
        reserve: reserveBytes > 0 ? this.reserve : undefined,
        checkpoint: () => this.db.pragma('wal_checkpoint(RESTART)'),
      });
      if (reserveBytes > 0) this.restoreReserve();
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.schemaVersion;
    const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    if (current > latest) {
      throw new FailedPreconditionError(
        `snapshot metadata ${this.path} has schema version ${current}, newer than this berth knows (${latest})`,
      );
    }
    this.db
      .transaction(() => {
        for (const m of MIGRATIONS) if (m.version > current) m.up(this.db);
        this.db.pragma(`user_version = ${latest}`);
      })
      .immediate();
  }

  private stmt(source: string): Statement {
    if (this.closed) throw new UnavailableError(`snapshot metadata ${this.path} is closed`);
    let s = this.statements.get(source);
    if (!s) {
      s = this.db.prepare(source);
      this.statements.set(source, s);
    }
    return s;
  }

  /**
   * Runs fn in one write transaction; fn may do synchronous file system work that must
   * commit with it, so it is not retried here: a full disk is a NoSpaceError naming `what`
   * and the file, and a caller that frees space calls `freeSpace()` and tries again.
   */
  write<T>(fn: () => T, what = 'snapshot metadata write'): T {
    if (this.closed) throw new UnavailableError(`snapshot metadata ${this.path} is closed`);
    try {
      return this.db.transaction(fn).immediate();
    } catch (e) {
      throw noSpaceError(e, this.path, what);
    }
  }

  /**
   * After a NoSpaceError: moves the WAL home and restarts it, and releases the reserve, so
   * that a write that frees space can be tried again. False when nothing could be freed.
   */
  freeSpace(): boolean {
    if (this.closed) return false;
    try {
      this.db.pragma('wal_checkpoint(RESTART)');
    } catch {}
    const released = this.reserve.release();
    try {
      this.db.pragma('wal_checkpoint(RESTART)');
    } catch {}
    return released;
  }

  /** Makes the reserve again when it was spent and there is room (cleanup() calls it). */
  restoreReserve(): boolean {
    if (this.closed || this.reserve.size === 0) return false;
    if (this.reserve.held) return true;
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {}
    return this.reserve.ensure();
  }

  private row(key: string): Row | undefined {
    return this.stmt(`${SELECT} WHERE s.key = ?`).get(key) as Row | undefined;
  }

  private mustRow(key: string): Row {
    validateKey(key);
    const row = this.row(key);
    if (!row) throw new NotFoundError(`snapshot ${key} does not exist`);
    return row;
  }

  private parentIds(parentId: number | null): string[] {
    if (parentId === null) return [];
    const rows = this.stmt(
      `WITH RECURSIVE chain(id, parent_id, depth) AS (
         SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
         UNION ALL
         SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id
       ) SELECT id FROM chain ORDER BY depth`,
    ).all(parentId) as { id: number }[];
    return rows.map((r) => String(r.id));
  }

  info(key: string): SnapshotInfo {
    return toInfo(this.mustRow(key));
  }

  /** The id and info of key: `NotFound` when there is none. */
  get(key: string): { id: string; info: SnapshotInfo; usage: SnapshotUsage; parentIds: string[] } {
    const row = this.mustRow(key);
    return {
      id: String(row.id),
      info: toInfo(row),
      usage: { size: row.size, inodes: row.inodes },
      parentIds: this.parentIds(row.parent_id),
    };
  }

  /** An active snapshot or view, for its mounts. */
  mountable(key: string): StoredSnapshot {
    const row = this.mustRow(key);
    if (row.kind === 'committed') {
      throw new FailedPreconditionError(`requested snapshot ${key} not active or view`);
    }
    return { id: String(row.id), kind: row.kind, parentIds: this.parentIds(row.parent_id) };
  }

  /** Resolves the parent a new snapshot would have: its id chain, nearest first. */
  resolveParent(parent: string): string[] {
    if (parent === '') return [];
    const row = this.row(parent);
    if (!row) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
    // containerd answers InvalidArgument here (storage.CreateSnapshot); clients see the same code.
    if (row.kind !== 'committed')
      throw new InvalidArgumentError(`parent "${parent}" is not committed snapshot`);
    return this.parentIds(row.id);
  }

  /** Fails with AlreadyExists when key is taken. */
  checkFree(key: string): void {
    if (this.row(key)) throw new AlreadyExistsError(`snapshot ${key} already exists`);
  }

  /**
   * Records a new active snapshot or view. `expectParentIds`, when given, is the chain the
   * caller prepared files for; a different chain now (the parent was removed meanwhile)
   * fails rather than recording a snapshot over the wrong layers.
   */
  create(
    kind: 'active' | 'view',
    key: string,
    parent: string,
    labels: Labels | undefined,
    expectParentIds?: readonly string[],
  ): StoredSnapshot {
    validateKey(key);
    validateLabels(labels);
    const parentIds = this.resolveParent(parent);
    if (expectParentIds && parentIds.join(':') !== expectParentIds.join(':')) {
      throw new FailedPreconditionError(`parent snapshot ${parent} changed while ${key} was being prepared`);
    }
    this.checkFree(key);
    const now = nowNanos();
    const res = this.stmt(
      'INSERT INTO snapshots (key, kind, parent_id, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(
      key,
      kind,
      parentIds.length > 0 ? Number(parentIds[0]) : null,
      JSON.stringify(labels ?? {}),
      now,
      now,
    );
    return { id: String(res.lastInsertRowid), kind, parentIds };
  }

  /** Turns the active snapshot key (with id) into the committed snapshot name. */
  commit(
    name: string,
    key: string,
    labels: Labels | undefined,
    usage: SnapshotUsage,
    expectId?: string,
  ): string {
    validateKey(name, 'name');
    validateLabels(labels);
    const row = this.mustRow(key);
    if (expectId !== undefined && String(row.id) !== expectId) {
      throw new NotFoundError(`snapshot ${key} does not exist`);
    }
    if (row.kind !== 'active') throw new FailedPreconditionError(`snapshot ${key} is not active`);
    if (this.row(name)) throw new AlreadyExistsError(`committed snapshot ${name} already exists`);
    const now = nowNanos();
    this.stmt(
      `UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, created_at = ?, updated_at = ?,
         size = ?, inodes = ? WHERE id = ?`,
    ).run(name, JSON.stringify(labels ?? {}), now, now, usage.size, usage.inodes, row.id);
    return String(row.id);
  }

  /** Forgets key; FailedPrecondition while anything is built on it. Returns its id. */
  remove(key: string): string {
    const row = this.mustRow(key);
    if (this.stmt('SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1').get(row.id)) {
      throw new FailedPreconditionError(`cannot remove snapshot ${key} with child`);
    }
    this.stmt('DELETE FROM snapshots WHERE id = ?').run(row.id);
    return String(row.id);
  }

  /** Updates labels by field paths (containerd: only `labels` and `labels.<key>` may change). */
  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[] = []): SnapshotInfo {
    for (const p of fieldpaths) {
      if (p !== UPDATABLE_FIELDS && !p.startsWith('labels.')) {
        throw new InvalidArgumentError(`cannot update "${p}" field on snapshot "${info.name}"`);
      }
    }
    const row = this.mustRow(info.name);
    const current = JSON.parse(row.labels) as Labels;
    const labels = applyLabelPaths(current, info.labels ?? {}, fieldpaths) ?? current;
    for (const [k, v] of Object.entries(labels)) if (v === '') delete labels[k];
    validateLabels(labels);
    const now = nowNanos();
    this.stmt('UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?').run(
      JSON.stringify(labels),
      now,
      row.id,
    );
    return toInfo({ ...row, labels: JSON.stringify(labels), updated_at: String(now) });
  }

  /** Every snapshot matching the filters (containerd's filter language over kind, name, parent, labels). */
  list(filters?: readonly string[]): { id: string; info: SnapshotInfo }[] {
    const filter = parseFilters(filters);
    const rows = this.stmt(`${SELECT} ORDER BY s.key`).all() as Row[];
    return rows
      .map((row) => ({ id: String(row.id), info: toInfo(row) }))
      .filter(({ info }) => filter.match((fp) => snapshotField(info, fp)));
  }

  /** Ids of every recorded snapshot: any other directory under snapshots/ is garbage. */
  ids(): Set<string> {
    const rows = this.stmt('SELECT id FROM snapshots').all() as { id: number }[];
    return new Set(rows.map((r) => String(r.id)));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.statements.clear();
    this.db.close();
  }
}
