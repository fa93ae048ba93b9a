import {
  AlreadyExistsError,
  type ContentStore,
  FailedPreconditionError,
  NoSpaceError,
  nowNanos,
  retryOnFullDisk,
  type Snapshotter,
  SpaceReserve,
  validateIdentifier,
} from '@berth/api';
import type { Database, Statement } from 'better-sqlite3';
import BetterSqlite3 from 'better-sqlite3';
import { containerKind, MetadataContainerStore } from './containers';
import { contentKinds, MetadataContentStore } from './content';
import { type GCReport, mark, type ResourceKind, sweep } from './gc';
import { imageKind, MetadataImageStore } from './images';
import { leaseKind, SqliteLeaseManager } from './leases';
import { SqliteNamespaceStore } from './namespaces';
import { RwLock } from './rw-lock';
import { MIGRATIONS, type Migration, type MigrationResult, migrate } from './schema';
import { MetadataSnapshotter } from './snapshots';

export interface MetadataDBOptions {
  /** The backing (un-namespaced) content store the metadata content store wraps. */
  content?: ContentStore;
  /**
   * `shared` (default, as containerd): a writer whose expected digest the backing store
   * already holds commits without rewriting the bytes. `isolated`: every namespace must
   * write the whole blob before it sees it.
   */
  contentSharing?: 'shared' | 'isolated';
  /** How long an ingest held by no lease survives garbage collection. Default 24 h. */
  ingestExpiryMs?: number;
  /** How long a statement waits for another connection's lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Backing snapshotters by name, each wrapped as `db.snapshotter(name)` (more via addSnapshotter). */
  snapshotters?: Record<string, Snapshotter>;
  /**
   * Bytes kept in `<path>.reserve`, freed when a write finds the disk full so that deletes
   * still commit (see "A full disk" in the README). Default 4 MiB; 0 keeps none.
   */
  reserveBytes?: number;
  /**
   * Hold the file exclusively (default, as containerd's bolt file): no other connection,
   * no mmapped -shm file. Only tests that open one file twice turn it off.
   */
  exclusive?: boolean;
  /** Told when the reserve was spent or made again (the daemon logs it). */
  onReserve?: (event: 'released' | 'restored', path: string) => void;
  /** The schema steps; only tests pass their own. */
  migrations?: readonly Migration[];
}

/**
 * Told after each committed write transaction; `dirty` says whether something was
 * deleted since the last collection (containerd's RegisterMutationCallback).
 */
export type MutationCallback = (dirty: boolean) => void;

/**
 * The metadata database: one SQLite file holding every namespace's view of content,
 * leases, snapshots, images and containers, and the garbage collector over them. It never
 * collects on its own: as containerd's, it reports each write (a mutation, dirty once
 * something was deleted) to whoever schedules collections (the daemon's gc.v1 plugin).
 */
export class MetadataDB {
  readonly sql: Database;
  /** What opening did to the schema: `from` 0 for a new file, `from === to` when current. */
  readonly migration: MigrationResult;
  readonly namespaces: SqliteNamespaceStore;
  readonly leases: SqliteLeaseManager;
  /** Present when a backing content store was given. */
  readonly content: MetadataContentStore | undefined;
  readonly images: MetadataImageStore;
  readonly containers: MetadataContainerStore;
  readonly contentSharing: 'shared' | 'isolated';
  readonly ingestExpiryMs: number;
  /** The database file. */
  readonly path: string;
  /** Room kept for deletes on a full disk; undefined with `reserveBytes: 0` or in memory. */
  readonly reserve: SpaceReserve | undefined;
  private readonly onReserve: MetadataDBOptions['onReserve'];
  /** The reserve was released (or could not be made): the disk is, or was, full. */
  private reserveSpent = false;

  /** Shared by writes that await a backing store; exclusive for garbage collection. */
  readonly gcLock = new RwLock();
  private readonly kinds: ResourceKind[] = [];
  private readonly snapshotterMap = new Map<string, MetadataSnapshotter>();
  private readonly statements = new Map<string, Statement>();
  private dirty = 0;
  /** Every markDirty ever: never reset, so a transaction can tell whether it deleted. */
  private deletions = 0;
  private readonly mutationCallbacks: MutationCallback[] = [];
  private closed = false;

  constructor(path: string, opts: MetadataDBOptions = {}) {
    this.path = path;
    const reserveBytes = opts.reserveBytes ?? DEFAULT_RESERVE_BYTES;
    const inMemory = path === ':memory:' || path === '';
    this.reserve =
      reserveBytes > 0 && !inMemory ? new SpaceReserve(`${path}.reserve`, reserveBytes) : undefined;
    this.onReserve = opts.onReserve;
    this.sql = new BetterSqlite3(path, { timeout: opts.busyTimeoutMs ?? 5000 });
    try {
      // Exclusive, as containerd's bolt file: one connection owns the database. It also keeps
      // the WAL index in memory instead of a mmapped -shm file, whose pages, if the disk is
      // full when they are first touched, kill the process with SIGBUS (1 KiB-block ext4).
      if (opts.exclusive ?? true) this.sql.pragma('locking_mode = EXCLUSIVE');
      this.sql.pragma('journal_mode = WAL');
      this.sql.pragma('foreign_keys = ON');
      this.sql.pragma('synchronous = NORMAL');
      // Opening on a full disk must work (the daemon has to start to free anything): a
      // migration that does not fit is retried with the reserve freed, like any write.
      this.migration = this.retrying('schema migration', () =>
        migrate(this.sql, opts.migrations ?? MIGRATIONS),
      );
      // Made after the migration: a database that cannot open needs no reserve. Missing
      // and impossible to make counts as spent: the disk is full already.
      this.reserveSpent = this.reserve !== undefined && !this.reserve.ensure();
    } catch (e) {
      this.sql.close();
      throw e;
    }
    this.contentSharing = opts.contentSharing ?? 'shared';
    this.ingestExpiryMs = opts.ingestExpiryMs ?? 24 * 60 * 60 * 1000;

    this.namespaces = new SqliteNamespaceStore(this);
    this.leases = new SqliteLeaseManager(this);
    this.content = opts.content ? new MetadataContentStore(this, opts.content) : undefined;
    this.images = new MetadataImageStore(this);
    this.containers = new MetadataContainerStore(this);
    // Registration order is the order a blocked namespace delete names what remains:
    // containerd's "images, blobs, containers, snapshots on ...".
    this.registerResourceKind(imageKind(this));
    for (const kind of contentKinds(this, opts.content)) this.registerResourceKind(kind);
    this.registerResourceKind(containerKind(this));
    this.registerResourceKind(leaseKind(this));
    for (const [name, sn] of Object.entries(opts.snapshotters ?? {})) this.addSnapshotter(name, sn);
  }

  /**
   * Wraps a backing snapshotter under `name` (namespaced keys, parents and labels here,
   * `snapshots/<name>` in leases and GC). AlreadyExists when the name is taken.
   */
  addSnapshotter(name: string, backing: Snapshotter): MetadataSnapshotter {
    validateIdentifier(name);
    if (this.snapshotterMap.has(name))
      throw new AlreadyExistsError(`snapshotter ${JSON.stringify(name)}: already exists`);
    const sn = new MetadataSnapshotter(this, name, backing);
    this.registerResourceKind(sn.resourceKind());
    this.snapshotterMap.set(name, sn);
    return sn;
  }

  /** The metadata snapshotter named `name`, if one was added. */
  snapshotter(name: string): MetadataSnapshotter | undefined {
    return this.snapshotterMap.get(name);
  }

  /** Every metadata snapshotter, by name. */
  get snapshotters(): ReadonlyMap<string, MetadataSnapshotter> {
    return this.snapshotterMap;
  }

  /** The schema version of the open file. */
  get schemaVersion(): number {
    return this.sql.pragma('user_version', { simple: true }) as number;
  }

  /** Adds a resource kind to garbage collection and to namespace-emptiness checks. */
  registerResourceKind(kind: ResourceKind): void {
    if (this.kinds.some((k) => k.type === kind.type)) {
      throw new FailedPreconditionError(`resource kind "${kind.type}" is already registered`);
    }
    this.kinds.push(kind);
  }

  get resourceKinds(): readonly ResourceKind[] {
    return this.kinds;
  }

  /** A cached prepared statement. */
  stmt(source: string): Statement {
    let s = this.statements.get(source);
    if (!s) {
      s = this.sql.prepare(source);
      this.statements.set(source, s);
    }
    return s;
  }

  /**
   * Runs fn in a write transaction (BEGIN IMMEDIATE); nested calls become savepoints. Once
   * the outermost one commits, the mutation callbacks hear of it (a deletion calls
   * markDirty inside it, so its own report is already dirty).
   */
  transaction<T>(fn: () => T): T;
  /** `what` ("lease delete \"x\"") names the operation when the disk is full. */
  transaction<T>(what: string, fn: () => T): T;
  transaction<T>(whatOrFn: string | (() => T), maybeFn?: () => T): T {
    this.checkOpen();
    const [what, fn] = typeof whatOrFn === 'string' ? [whatOrFn, maybeFn!] : ['write', whatOrFn];
    const outermost = !this.sql.inTransaction;
    if (!outermost) return this.sql.transaction(fn).immediate();
    // A transaction that deletes calls markDirty: only those may spend the reserve, and
    // while it is spent (the disk is full), only those commit, so that what deletes free
    // goes to making the reserve again rather than to new records.
    const marks = this.deletions;
    const deletesOnly = this.reserveSpent && !this.restoreReserve();
    const guarded = deletesOnly
      ? () => {
          const r = fn();
          if (this.deletions === marks) {
            throw new NoSpaceError(
              this.path,
              `metadata ${what}: the disk holding ${this.path} is full (its space reserve is spent): only deletions are accepted until space is freed`,
            );
          }
          return r;
        }
      : fn;
    const result = this.retrying(
      what,
      () => this.sql.transaction(guarded).immediate(),
      () => this.deletions > marks,
    );
    this.mutated();
    return result;
  }

  /**
   * Runs a whole write transaction; on a full disk, checkpoints and retries, then frees the
   * reserve and retries (fn runs again: it must only write SQL and count deletions).
   */
  private retrying<T>(what: string, fn: () => T, frees: () => boolean = () => true): T {
    return retryOnFullDisk(`metadata ${what}`, fn, {
      path: this.path,
      reserve: this.reserveSpent ? undefined : this.reserve,
      mayUseReserve: frees,
      checkpoint: () => this.sql.pragma('wal_checkpoint(RESTART)'),
      onReserveReleased: () => {
        this.reserveSpent = true;
        this.onReserve?.('released', this.reserve!.path);
      },
    });
  }

  /**
   * Makes the reserve again when it was spent and the disk has room (twice its size free).
   * The collector calls it after freeing space; so does every write while it is spent.
   */
  restoreReserve(): boolean {
    if (!this.reserve) return false;
    if (!this.reserveSpent) return true;
    // The checkpoint first: the WAL's pages go home, so the reserve is not what they need.
    try {
      this.sql.pragma('wal_checkpoint(TRUNCATE)');
    } catch {}
    if (!this.reserve.ensure()) return false;
    this.reserveSpent = false;
    this.onReserve?.('restored', this.reserve.path);
    return true;
  }

  /** Runs fn in a read transaction: one consistent snapshot across its statements. */
  view<T>(fn: () => T): T {
    this.checkOpen();
    return this.sql.transaction(fn).deferred();
  }

  /** Creates the namespace when it does not exist yet: writing into one creates it, as containerd. */
  ensureNamespace(namespace: string): void {
    this.stmt('INSERT OR IGNORE INTO namespaces (name, created_at) VALUES (?, ?)').run(namespace, nowNanos());
  }

  /**
   * Records that something was deleted, so a collection has work to do. Called inside the
   * deleting transaction; outside one, it is reported as a mutation of its own.
   */
  markDirty(): void {
    this.dirty++;
    this.deletions++;
    if (!this.sql.inTransaction) this.mutated();
  }

  /** Deletions since the last collection. */
  get dirtyCount(): number {
    return this.dirty;
  }

  /** Registers fn to hear of every committed write; returns what unregisters it. */
  onMutation(fn: MutationCallback): () => void {
    this.mutationCallbacks.push(fn);
    return () => {
      const i = this.mutationCallbacks.indexOf(fn);
      if (i >= 0) this.mutationCallbacks.splice(i, 1);
    };
  }

  private mutated(): void {
    const dirty = this.dirty > 0;
    for (const fn of this.mutationCallbacks) fn(dirty);
  }

  /**
   * Marks from the roots, removes unreachable records in one transaction, then frees
   * backing data no record references. Writers that await a backing store wait meanwhile.
   */
  async collectGarbage(): Promise<GCReport> {
    this.checkOpen();
    return this.gcLock.exclusive(async () => {
      this.checkOpen();
      const started = performance.now();
      const report: GCReport = { removed: [], bytes: 0, durationMs: 0, metadataMs: 0 };
      // Straight to SQLite: the collector's own write is no mutation to report. On a full
      // disk it retries as deletes do: collecting is how space comes back.
      const removed = this.retrying('garbage collection', () =>
        this.sql
          .transaction(() => {
            const reachable = mark(this.kinds, new Date());
            return sweep(this.kinds, reachable);
          })
          .immediate(),
      );
      report.removed.push(...removed);
      // Everything deleted so far is covered by this run.
      this.dirty = 0;
      report.metadataMs = performance.now() - started;
      for (const kind of this.kinds) await kind.cleanup?.(report);
      if (this.reserveSpent) this.restoreReserve();
      report.durationMs = performance.now() - started;
      return report;
    });
  }

  /** Waits for a running collection, then closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.gcLock.exclusive(() => {
      if (this.closed) return;
      this.closed = true;
      this.mutationCallbacks.length = 0;
      this.statements.clear();
      this.sql.close();
    });
  }

  private checkOpen(): void {
    if (this.closed) throw new FailedPreconditionError('metadata database is closed');
  }
}

const DEFAULT_RESERVE_BYTES = 4 << 20;

/** Opens (creating and migrating as needed) the metadata database at `path`. */
export function openMetadataDB(path: string, opts?: MetadataDBOptions): MetadataDB {
  return new MetadataDB(path, opts);
}
