import { randomBytes } from 'node:crypto';
import {
  AlreadyExistsError,
  type Context,
  InvalidArgumentError,
  type Labels,
  LEASE_EXPIRE_LABEL,
  type Lease,
  type LeaseCreateOptions,
  type LeaseManager,
  type LeaseResource,
  labelField,
  NotFoundError,
  parseDigest,
  parseFilters,
  preciseNow,
  requireNamespace,
  validateIdentifier,
  validateLabels,
} from '@berth/api';
import type { MetadataDB } from './db';
import type { GCNode, ResourceKind } from './gc';
import { groupLabels } from './label-rows';
import { nsColumn, nsDate } from './time';

interface LeaseRow {
  id: string;
  created_at: string;
}

/** Validates a lease resource: `content` (a digest), `ingests`, `snapshots/<snapshotter>`. */
export function validateLeaseResource(r: LeaseResource): void {
  if (typeof r.id !== 'string' || r.id === '') {
    throw new InvalidArgumentError(`lease resource of type "${r.type}": id must not be empty`);
  }
  const parts = (r.type ?? '').split('/');
  switch (parts[0]) {
    case 'content':
    case 'ingests':
      if (parts.length !== 1) throw new InvalidArgumentError(`invalid lease resource type "${r.type}"`);
      if (parts[0] === 'content') {
        try {
          parseDigest(r.id);
        } catch (e) {
          throw new InvalidArgumentError(`invalid content resource id "${r.id}": ${(e as Error).message}`, {
            cause: e,
          });
        }
      }
      return;
    case 'snapshots':
      if (parts.length !== 2 || parts[1] === '') {
        throw new InvalidArgumentError(
          `invalid snapshot resource type "${r.type}": want snapshots/<snapshotter>`,
        );
      }
      validateIdentifier(parts[1]!);
      return;
    default:
      throw new InvalidArgumentError(`lease resource type "${r.type}" is not supported`);
  }
}

/**
 * Lease ids are looser than identifiers: containerd only requires one, and ctr's random ids
 * (`<nanos>-<base64url>`) may end in `-` or `_`. Printable, no spaces, at most 255 bytes.
 */
export function validateLeaseId(id: string): void {
  if (id === '') throw new InvalidArgumentError('lease id must be provided');
  if (Buffer.byteLength(id) > 255 || !/^[\x21-\x7e]+$/.test(id)) {
    throw new InvalidArgumentError(
      `invalid lease id "${id}": must be 1 to 255 printable characters without spaces`,
    );
  }
}

/** NotFound unless lease `id` exists in `namespace`. Call inside a transaction. */
export function requireLease(db: MetadataDB, namespace: string, id: string): void {
  if (!db.stmt('SELECT 1 FROM leases WHERE namespace = ? AND id = ?').get(namespace, id)) {
    throw new NotFoundError(`lease "${id}": not found`);
  }
}

/** Adds a resource to the context's lease, if there is one (which must exist). */
export function addToContextLease(
  db: MetadataDB,
  ctx: Context,
  namespace: string,
  type: string,
  id: string,
): boolean {
  if (!ctx.lease) return false;
  requireLease(db, namespace, ctx.lease);
  db.stmt('INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)').run(
    namespace,
    ctx.lease,
    type,
    id,
  );
  return true;
}

/** Removes a resource from the context's lease, if there is one. */
export function removeFromContextLease(
  db: MetadataDB,
  ctx: Context,
  namespace: string,
  type: string,
  id: string,
): void {
  if (!ctx.lease) return;
  db.stmt('DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?').run(
    namespace,
    ctx.lease,
    type,
    id,
  );
}

// RFC 3339 as Go's time.RFC3339 parses it.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/i;

/** The expiry of a lease label value; undefined when absent or not RFC 3339 (then it never expires). */
export function parseExpiry(value: string | undefined): Date | undefined {
  if (value === undefined || !RFC3339.test(value)) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** Leases and the resources they hold, in SQLite. */
export class SqliteLeaseManager implements LeaseManager {
  constructor(private readonly db: MetadataDB) {}

  async create(ctx: Context, opts: LeaseCreateOptions = {}): Promise<Lease> {
    const ns = requireNamespace(ctx);
    const id = opts.id ?? `${Date.now()}-${randomBytes(6).toString('hex')}`;
    validateLeaseId(id);
    validateLabels(opts.labels);
    const labels: Labels = {};
    for (const [k, v] of Object.entries(opts.labels ?? {})) if (v !== '') labels[k] = v;
    const createdAt = preciseNow();
    this.db.transaction(`lease create ${JSON.stringify(id)}`, () => {
      this.db.ensureNamespace(ns);
      const r = this.db
        .stmt('INSERT OR IGNORE INTO leases (namespace, id, created_at) VALUES (?, ?, ?)')
        .run(ns, id, createdAt.toNanos());
      if (r.changes === 0) throw new AlreadyExistsError(`lease "${id}": already exists`);
      const put = this.db.stmt('INSERT INTO lease_labels (namespace, lease, key, value) VALUES (?, ?, ?, ?)');
      for (const [k, v] of Object.entries(labels)) put.run(ns, id, k, v);
    });
    return { id, createdAt, labels };
  }

  async delete(ctx: Context, id: string, opts: { sync?: boolean } = {}): Promise<void> {
    const ns = requireNamespace(ctx);
    this.db.transaction(`lease delete ${JSON.stringify(id)}`, () => {
      const r = this.db.stmt('DELETE FROM leases WHERE namespace = ? AND id = ?').run(ns, id);
      if (r.changes === 0) throw new NotFoundError(`lease "${id}": not found`);
      this.db.markDirty();
    });
    if (opts.sync) await this.db.collectGarbage();
  }

  /** Filters on `id` and `labels.<key>`. */
  async list(ctx: Context, filters?: string[]): Promise<Lease[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const [rows, labelRows] = this.db.view(
      () =>
        [
          this.db
            .stmt(
              `SELECT id, ${nsColumn('created_at')} FROM leases WHERE namespace = ? ORDER BY leases.created_at, id`,
            )
            .all(ns) as LeaseRow[],
          this.db.stmt('SELECT lease, key, value FROM lease_labels WHERE namespace = ?').all(ns) as {
            lease: string;
            key: string;
            value: string;
          }[],
        ] as const,
    );
    const labels = groupLabels(labelRows, (l) => l.lease);
    const out: Lease[] = [];
    for (const row of rows) {
      const lease: Lease = {
        id: row.id,
        createdAt: nsDate(row.created_at),
        labels: labels.get(row.id) ?? {},
      };
      const matches = filter.match((path) => {
        if (path[0] === 'id') return lease.id;
        if (path[0] === 'labels') return labelField(lease.labels, path);
        return undefined;
      });
      if (matches) out.push(lease);
    }
    return out;
  }

  async addResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void> {
    const ns = requireNamespace(ctx);
    validateLeaseResource(resource);
    this.db.transaction(`lease ${JSON.stringify(leaseId)} add resource`, () => {
      requireLease(this.db, ns, leaseId);
      this.db
        .stmt('INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)')
        .run(ns, leaseId, resource.type, resource.id);
    });
  }

  async deleteResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void> {
    const ns = requireNamespace(ctx);
    validateLeaseResource(resource);
    this.db.transaction(`lease ${JSON.stringify(leaseId)} delete resource`, () => {
      requireLease(this.db, ns, leaseId);
      this.db
        .stmt('DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?')
        .run(ns, leaseId, resource.type, resource.id);
      this.db.markDirty();
    });
  }

  async listResources(ctx: Context, leaseId: string): Promise<LeaseResource[]> {
    const ns = requireNamespace(ctx);
    return this.db.view(() => {
      requireLease(this.db, ns, leaseId);
      return this.db
        .stmt('SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY type, id')
        .all(ns, leaseId) as LeaseResource[];
    });
  }
}

/**
 * Leases for the collector: an unexpired lease is a root, and so is everything it holds
 * (leases are never referenced, so their resources are emitted directly, as containerd).
 * Expired leases are swept with their resource lists.
 */
export function leaseKind(db: MetadataDB): ResourceKind {
  return {
    type: 'leases',
    dropNamespace: (ns) => {
      db.stmt('DELETE FROM leases WHERE namespace = ?').run(ns);
    },
    *roots(now) {
      const expiries = db
        .stmt('SELECT namespace, lease, value FROM lease_labels WHERE key = ?')
        .all(LEASE_EXPIRE_LABEL) as { namespace: string; lease: string; value: string }[];
      const expired = new Set<string>();
      for (const e of expiries) {
        const at = parseExpiry(e.value);
        if (at && at.getTime() < now.getTime()) expired.add(`${e.namespace}\0${e.lease}`);
      }
      const leases = db.stmt('SELECT namespace, id FROM leases').all() as { namespace: string; id: string }[];
      for (const l of leases) {
        if (!expired.has(`${l.namespace}\0${l.id}`))
          yield { type: 'leases', namespace: l.namespace, id: l.id };
      }
      const resources = db.stmt('SELECT namespace, lease, type, id FROM lease_resources').all() as {
        namespace: string;
        lease: string;
        type: string;
        id: string;
      }[];
      for (const r of resources) {
        if (!expired.has(`${r.namespace}\0${r.lease}`))
          yield { type: r.type, namespace: r.namespace, id: r.id };
      }
    },
    references: () => [],
    all: () =>
      (db.stmt('SELECT namespace, id FROM leases').all() as { namespace: string; id: string }[]).map(
        (l): GCNode => ({ type: 'leases', namespace: l.namespace, id: l.id }),
      ),
    remove(node) {
      db.stmt('DELETE FROM leases WHERE namespace = ? AND id = ?').run(node.namespace, node.id);
    },
  };
}
