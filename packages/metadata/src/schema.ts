import { FailedPreconditionError, InvalidArgumentError } from '@berth/api';
import type { Database } from 'better-sqlite3';

/**
 * One step of the schema. Migrations run in version order, all of them in one
 * transaction with the new version stamp, so a failure leaves the database as it was.
 * A migration is never edited once released: a change is a new migration.
 */
export interface Migration {
  /** The schema version this migration produces: 1, 2, 3... with no gaps. */
  version: number;
  description: string;
  up(db: Database): void;
}

/** The schema, documented table by table in packages/metadata/README.md. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'namespaces, content, ingests and leases',
    up(db) {
      db.exec(`
        CREATE TABLE namespaces (
          name       TEXT PRIMARY KEY,
          created_at INTEGER NOT NULL
        ) STRICT;

        CREATE TABLE namespace_labels (
          namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
          key       TEXT NOT NULL,
          value     TEXT NOT NULL,
          PRIMARY KEY (namespace, key)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE content (
          namespace  TEXT NOT NULL REFERENCES namespaces(name),
          digest     TEXT NOT NULL,
          size       INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (namespace, digest)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX content_by_digest ON content(digest);

        CREATE TABLE content_labels (
          namespace TEXT NOT NULL,
          digest    TEXT NOT NULL,
          key       TEXT NOT NULL,
          value     TEXT NOT NULL,
          PRIMARY KEY (namespace, digest, key),
          FOREIGN KEY (namespace, digest) REFERENCES content(namespace, digest) ON DELETE CASCADE
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX content_labels_by_key ON content_labels(key);

        CREATE TABLE ingests (
          seq         INTEGER PRIMARY KEY AUTOINCREMENT,
          namespace   TEXT NOT NULL REFERENCES namespaces(name),
          ref         TEXT NOT NULL,
          backing_ref TEXT NOT NULL UNIQUE,
          expected    TEXT,
          shared      INTEGER NOT NULL DEFAULT 0,
          expires_at  INTEGER,
          created_at  INTEGER NOT NULL,
          UNIQUE (namespace, ref)
        ) STRICT;

        CREATE TABLE leases (
          namespace  TEXT NOT NULL REFERENCES namespaces(name),
          id         TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          PRIMARY KEY (namespace, id)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE lease_labels (
          namespace TEXT NOT NULL,
          lease     TEXT NOT NULL,
          key       TEXT NOT NULL,
          value     TEXT NOT NULL,
          PRIMARY KEY (namespace, lease, key),
          FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE lease_resources (
          namespace TEXT NOT NULL,
          lease     TEXT NOT NULL,
          type      TEXT NOT NULL,
          id        TEXT NOT NULL,
          PRIMARY KEY (namespace, lease, type, id),
          FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
        ) STRICT, WITHOUT ROWID;
      `);
    },
  },
  {
    version: 2,
    description: 'snapshots: per snapshotter and namespace, with parents and labels',
    up(db) {
      db.exec(`
        CREATE TABLE snapshots (
          id          INTEGER PRIMARY KEY AUTOINCREMENT,
          namespace   TEXT NOT NULL REFERENCES namespaces(name),
          snapshotter TEXT NOT NULL,
          key         TEXT NOT NULL,
          backing_key TEXT NOT NULL,
          parent_id   INTEGER REFERENCES snapshots(id) DEFERRABLE INITIALLY DEFERRED,
          created_at  INTEGER NOT NULL,
          updated_at  INTEGER NOT NULL,
          UNIQUE (namespace, snapshotter, key),
          UNIQUE (snapshotter, backing_key)
        ) STRICT;
        CREATE INDEX snapshots_by_parent ON snapshots(parent_id);

        CREATE TABLE snapshot_labels (
          snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
          key         TEXT NOT NULL,
          value       TEXT NOT NULL,
          PRIMARY KEY (snapshot_id, key)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX snapshot_labels_by_key ON snapshot_labels(key);

        CREATE TABLE snapshot_sequences (
          snapshotter TEXT PRIMARY KEY,
          last        INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
      `);
    },
  },
  {
    version: 3,
    description: 'images and containers, with labels, target annotations and extensions',
    up(db) {
      db.exec(`
        CREATE TABLE images (
          namespace         TEXT NOT NULL REFERENCES namespaces(name),
          name              TEXT NOT NULL,
          target_media_type TEXT NOT NULL,
          target_digest     TEXT NOT NULL,
          target_size       INTEGER NOT NULL,
          created_at        INTEGER NOT NULL,
          updated_at        INTEGER NOT NULL,
          PRIMARY KEY (namespace, name)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE image_labels (
          namespace TEXT NOT NULL,
          image     TEXT NOT NULL,
          key       TEXT NOT NULL,
          value     TEXT NOT NULL,
          PRIMARY KEY (namespace, image, key),
          FOREIGN KEY (namespace, image) REFERENCES images(namespace, name) ON DELETE CASCADE ON UPDATE CASCADE
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE image_annotations (
          namespace TEXT NOT NULL,
          image     TEXT NOT NULL,
          key       TEXT NOT NULL,
          value     TEXT NOT NULL,
          PRIMARY KEY (namespace, image, key),
          FOREIGN KEY (namespace, image) REFERENCES images(namespace, name) ON DELETE CASCADE ON UPDATE CASCADE
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE containers (
          namespace            TEXT NOT NULL REFERENCES namespaces(name),
          id                   TEXT NOT NULL,
          image                TEXT NOT NULL,
          runtime_name         TEXT NOT NULL,
          runtime_options_type TEXT,
          runtime_options      BLOB,
          spec_type            TEXT NOT NULL,
          spec                 BLOB NOT NULL,
          snapshotter          TEXT NOT NULL,
          snapshot_key         TEXT NOT NULL,
          sandbox              TEXT NOT NULL,
          created_at           INTEGER NOT NULL,
          updated_at           INTEGER NOT NULL,
          PRIMARY KEY (namespace, id)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE container_labels (
          namespace TEXT NOT NULL,
          container TEXT NOT NULL,
          key       TEXT NOT NULL,
          value     TEXT NOT NULL,
          PRIMARY KEY (namespace, container, key),
          FOREIGN KEY (namespace, container) REFERENCES containers(namespace, id) ON DELETE CASCADE
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE container_extensions (
          namespace TEXT NOT NULL,
          container TEXT NOT NULL,
          name      TEXT NOT NULL,
          type_url  TEXT NOT NULL,
          value     BLOB NOT NULL,
          PRIMARY KEY (namespace, container, name),
          FOREIGN KEY (namespace, container) REFERENCES containers(namespace, id) ON DELETE CASCADE
        ) STRICT, WITHOUT ROWID;
      `);
    },
  },
  {
    version: 4,
    description: 'times in nanoseconds since the epoch, as containerd keeps them (were milliseconds)',
    up(db) {
      // INTEGER is 64-bit: nanoseconds fit until 2262. Values stay sortable and comparable in SQL.
      db.exec(`
        UPDATE namespaces SET created_at = created_at * 1000000;
        UPDATE content    SET created_at = created_at * 1000000, updated_at = updated_at * 1000000;
        UPDATE ingests    SET created_at = created_at * 1000000, expires_at = expires_at * 1000000;
        UPDATE leases     SET created_at = created_at * 1000000;
        UPDATE snapshots  SET created_at = created_at * 1000000, updated_at = updated_at * 1000000;
        UPDATE images     SET created_at = created_at * 1000000, updated_at = updated_at * 1000000;
        UPDATE containers SET created_at = created_at * 1000000, updated_at = updated_at * 1000000;
      `);
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export interface MigrationResult {
  from: number;
  to: number;
}

function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new InvalidArgumentError(
        `migration "${m.description}" has version ${m.version}, expected ${i + 1}`,
      );
    }
  });
}

/** Brings the database to the last migration's version, atomically. */
export function migrate(db: Database, migrations: readonly Migration[] = MIGRATIONS): MigrationResult {
  checkOrder(migrations);
  const target = migrations.length;
  const run = db.transaction((): MigrationResult => {
    const from = db.pragma('user_version', { simple: true }) as number;
    if (from > target) {
      throw new FailedPreconditionError(
        `metadata database schema version ${from} is newer than this berth understands (${target})`,
      );
    }
    for (const m of migrations.slice(from)) {
      try {
        m.up(db);
      } catch (e) {
        throw new FailedPreconditionError(
          `metadata migration to version ${m.version} (${m.description}) failed: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    // user_version lives in the database header and follows the transaction.
    if (from !== target) db.pragma(`user_version = ${target}`);
    return { from, to: target };
  });
  return run.immediate();
}
