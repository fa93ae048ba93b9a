import {
  AlreadyExistsError,
  type Context,
  FailedPreconditionError,
  type Labels,
  type NamespaceStore,
  NotFoundError,
  nowNanos,
  validateIdentifier,
  validateLabel,
  validateLabels,
} from '@berth/api';
import type { MetadataDB } from './db';

/** Namespaces and their labels, in SQLite. */
export class SqliteNamespaceStore implements NamespaceStore {
  constructor(private readonly db: MetadataDB) {}

  async create(_ctx: Context, name: string, labels?: Labels): Promise<void> {
    validateIdentifier(name);
    validateLabels(labels);
    this.db.transaction(`namespace create ${JSON.stringify(name)}`, () => {
      const r = this.db
        .stmt('INSERT OR IGNORE INTO namespaces (name, created_at) VALUES (?, ?)')
        .run(name, nowNanos());
      if (r.changes === 0) throw new AlreadyExistsError(`namespace "${name}": already exists`);
      const put = this.db.stmt('INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)');
      for (const [k, v] of Object.entries(labels ?? {})) {
        if (v !== '') put.run(name, k, v);
      }
    });
  }

  /** NotFound when the namespace does not exist (containerd answers an empty set). */
  async labels(_ctx: Context, name: string): Promise<Labels> {
    validateIdentifier(name);
    return this.db.view(() => {
      this.mustExist(name);
      const rows = this.db
        .stmt('SELECT key, value FROM namespace_labels WHERE namespace = ? ORDER BY key')
        .all(name) as { key: string; value: string }[];
      return Object.fromEntries(rows.map((r) => [r.key, r.value]));
    });
  }

  /** Sets one label; an empty value removes it. Creates the namespace if needed, as containerd. */
  async setLabel(_ctx: Context, name: string, key: string, value: string): Promise<void> {
    validateIdentifier(name);
    validateLabel(key, value);
    this.db.transaction(`namespace ${JSON.stringify(name)} set label`, () => {
      this.db.ensureNamespace(name);
      if (value === '') {
        this.db.stmt('DELETE FROM namespace_labels WHERE namespace = ? AND key = ?').run(name, key);
      } else {
        this.db
          .stmt(
            'INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?) ' +
              'ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value',
          )
          .run(name, key, value);
      }
    });
  }

  async list(_ctx: Context): Promise<string[]> {
    const rows = this.db.stmt('SELECT name FROM namespaces ORDER BY name').all() as { name: string }[];
    return rows.map((r) => r.name);
  }

  /** NotFound when missing; FailedPrecondition naming what the namespace still holds. */
  async delete(_ctx: Context, name: string): Promise<void> {
    validateIdentifier(name);
    this.db.transaction(`namespace delete ${JSON.stringify(name)}`, () => {
      this.mustExist(name);
      const remaining: string[] = [];
      for (const kind of this.db.resourceKinds) {
        const what = kind.inUse?.(name);
        if (what) remaining.push(what);
      }
      if (remaining.length > 0) {
        throw new FailedPreconditionError(
          `namespace "${name}" must be empty, but it still has ${remaining.join(', ')}`,
        );
      }
      for (const kind of this.db.resourceKinds) kind.dropNamespace?.(name);
      this.db.stmt('DELETE FROM namespaces WHERE name = ?').run(name);
    });
  }

  private mustExist(name: string): void {
    if (!this.db.stmt('SELECT 1 FROM namespaces WHERE name = ?').get(name)) {
      throw new NotFoundError(`namespace "${name}": not found`);
    }
  }
}
