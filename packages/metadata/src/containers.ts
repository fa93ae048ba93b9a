import {
  AlreadyExistsError,
  type AnyValue,
  applyLabelPaths,
  type Container,
  type ContainerInput,
  type ContainerStore,
  type Context,
  InvalidArgumentError,
  type Labels,
  labelField,
  NotFoundError,
  parseFilters,
  preciseNow,
  requireNamespace,
  toNanos,
  validateIdentifier,
  validateLabels,
} from '@berth/api';
import type { MetadataDB } from './db';
import { type GCNode, labelReferences, nodeKey, type ResourceKind } from './gc';
import { groupLabels } from './label-rows';
import { nsColumn, nsDate } from './time';

interface ContainerRow {
  id: string;
  image: string;
  runtime_name: string;
  runtime_options_type: string | null;
  runtime_options: Buffer | null;
  spec_type: string;
  spec: Buffer;
  snapshotter: string;
  snapshot_key: string;
  sandbox: string;
  created_at: string;
  updated_at: string;
}

interface ExtensionRow {
  container: string;
  name: string;
  type_url: string;
  value: Buffer;
}

const COLUMNS =
  'id, image, runtime_name, runtime_options_type, runtime_options, spec_type, spec, snapshotter, ' +
  'snapshot_key, sandbox, created_at, updated_at';
const SELECT_COLUMNS = COLUMNS.replace(
  'created_at, updated_at',
  `${nsColumn('created_at')}, ${nsColumn('updated_at')}`,
);

/** The fields a full update (no field paths) replaces, as containerd. */
const FULL_UPDATE = ['labels', 'spec', 'extensions', 'image', 'snapshotkey'];

const isAny = (v: unknown): v is AnyValue =>
  typeof v === 'object' && v !== null && typeof (v as AnyValue).typeUrl === 'string';

/** containerd's container validation, with the offending value named. */
export function validateContainer(c: ContainerInput): void {
  validateIdentifier(c?.id ?? '');
  const where = `container ${JSON.stringify(c.id)}`;
  for (const [k, v] of Object.entries(c.extensions ?? {})) {
    if (k === '') throw new InvalidArgumentError(`${where}: extension keys must not be zero-length`);
    if (!isAny(v)) throw new InvalidArgumentError(`${where}: extension ${JSON.stringify(k)} must be an Any`);
  }
  validateLabels(c.labels);
  if (!c.runtime?.name) throw new InvalidArgumentError(`${where}: runtime name must be set`);
  if (c.runtime.options !== undefined && c.runtime.options !== null && !isAny(c.runtime.options)) {
    throw new InvalidArgumentError(`${where}: runtime options must be an Any`);
  }
  if (!isAny(c.spec)) throw new InvalidArgumentError(`${where}: spec must be set`);
  if (c.snapshotKey && !c.snapshotter) {
    throw new InvalidArgumentError(
      `${where}: snapshotter must be set if snapshot key ${JSON.stringify(c.snapshotKey)} is set`,
    );
  }
}

/**
 * Containers in SQLite (containerd's metadata container store): metadata only (spec, runtime,
 * snapshot, labels, extensions), namespaced. Each container is a GC root holding its
 * snapshot (`snapshots/<snapshotter>`, key = snapshotKey) and what its gc.ref labels name.
 */
export class MetadataContainerStore implements ContainerStore {
  constructor(private readonly db: MetadataDB) {}

  async get(ctx: Context, id: string): Promise<Container> {
    const ns = requireNamespace(ctx);
    const c = this.db.view(() => this.read(ns, id));
    if (!c)
      throw new NotFoundError(
        `container ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}: not found`,
      );
    return c;
  }

  /** Filters on `id`, `image`, `runtime.name`, `snapshotter`, `labels.<k>`. */
  async list(ctx: Context, filters?: string[]): Promise<Container[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const all = this.db.view(() => {
      const rows = this.db
        .stmt(`SELECT ${SELECT_COLUMNS} FROM containers WHERE namespace = ? ORDER BY id`)
        .all(ns) as ContainerRow[];
      const labels = groupLabels(
        this.db.stmt('SELECT container, key, value FROM container_labels WHERE namespace = ?').all(ns) as {
          container: string;
          key: string;
          value: string;
        }[],
        (r) => r.container,
      );
      const extensions = groupExtensions(
        this.db
          .stmt('SELECT container, name, type_url, value FROM container_extensions WHERE namespace = ?')
          .all(ns) as ExtensionRow[],
      );
      return rows.map((r) => toContainer(r, labels.get(r.id) ?? {}, extensions.get(r.id) ?? {}));
    });
    return all.filter((c) =>
      filter.match((path) => {
        switch (path[0]) {
          case 'id':
            return c.id || undefined;
          case 'image':
            return c.image || undefined;
          case 'runtime':
            return path[1] === 'name' ? c.runtime.name || undefined : undefined;
          case 'snapshotter':
            return c.snapshotter || undefined;
          case 'labels':
            return labelField(c.labels, path);
          default:
            return undefined;
        }
      }),
    );
  }

  async create(ctx: Context, container: ContainerInput): Promise<Container> {
    const ns = requireNamespace(ctx);
    validateContainer(container);
    const now = preciseNow();
    const created = normalise(container, now, now);
    this.db.transaction(`container create ${JSON.stringify(container.id)}`, () => {
      this.db.ensureNamespace(ns);
      const r = this.db
        .stmt(
          `INSERT OR IGNORE INTO containers (namespace, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(ns, ...rowValues(created));
      if (r.changes === 0) {
        throw new AlreadyExistsError(`container ${JSON.stringify(container.id)}: already exists`);
      }
      this.writeMaps(ns, created);
    });
    return created;
  }

  /**
   * containerd's field paths: `labels`, `labels.<k>`, `spec`, `extensions`, `extensions.<k>`,
   * `image`, `snapshotkey`. With none, those are replaced and a different runtime name or
   * snapshotter is InvalidArgument (both are immutable).
   */
  async update(ctx: Context, container: ContainerInput, fieldpaths: string[] = []): Promise<Container> {
    const ns = requireNamespace(ctx);
    if (!container?.id) throw new InvalidArgumentError('must specify a container id');
    const where = `container ${JSON.stringify(container.id)}`;
    const { updated } = this.db.transaction(`container update ${JSON.stringify(container.id)}`, () => {
      const current = this.read(ns, container.id);
      if (!current) throw new NotFoundError(`${where}: not found`);
      let paths = fieldpaths;
      if (paths.length === 0) {
        paths = FULL_UPDATE;
        if ((container.snapshotter ?? '') !== current.snapshotter) {
          throw new InvalidArgumentError(
            `${where}: snapshotter is immutable (${JSON.stringify(current.snapshotter)}, ` +
              `got ${JSON.stringify(container.snapshotter ?? '')})`,
          );
        }
        if ((container.runtime?.name ?? '') !== current.runtime.name) {
          throw new InvalidArgumentError(
            `${where}: runtime name is immutable (${JSON.stringify(current.runtime.name)}, ` +
              `got ${JSON.stringify(container.runtime?.name ?? '')})`,
          );
        }
      }
      const next: ContainerInput = {
        ...current,
        labels: { ...current.labels },
        extensions: { ...current.extensions },
      };
      for (const path of paths) {
        if (path === 'labels' || path.startsWith('labels.')) {
          next.labels = applyLabelPaths(next.labels, container.labels ?? {}, [path]) ?? next.labels;
        } else if (path.startsWith('extensions.')) {
          const key = path.slice('extensions.'.length);
          const value = container.extensions?.[key];
          if (value === undefined) delete next.extensions[key];
          else next.extensions[key] = value;
        } else if (path === 'extensions') {
          next.extensions = { ...(container.extensions ?? {}) };
        } else if (path === 'spec') {
          next.spec = container.spec;
        } else if (path === 'image') {
          next.image = container.image ?? '';
        } else if (path === 'snapshotkey') {
          next.snapshotKey = container.snapshotKey ?? '';
        } else {
          throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on ${where}`);
        }
      }
      validateContainer(next);
      const updated = normalise(next, current.createdAt, preciseNow());
      this.db
        .stmt(
          'UPDATE containers SET image = ?, spec_type = ?, spec = ?, snapshot_key = ?, updated_at = ? ' +
            'WHERE namespace = ? AND id = ?',
        )
        .run(
          updated.image,
          updated.spec!.typeUrl,
          updated.spec!.value,
          updated.snapshotKey,
          toNanos(updated.updatedAt),
          ns,
          updated.id,
        );
      this.writeMaps(ns, updated);
      const kept = new Set(containerReferences(ns, updated).map(nodeKey));
      const released = containerReferences(ns, current).some((n) => !kept.has(nodeKey(n)));
      if (released) this.db.markDirty();
      return { updated };
    });
    return updated;
  }

  async delete(ctx: Context, id: string): Promise<void> {
    const ns = requireNamespace(ctx);
    this.db.transaction(`container delete ${JSON.stringify(id)}`, () => {
      const r = this.db.stmt('DELETE FROM containers WHERE namespace = ? AND id = ?').run(ns, id);
      if (r.changes === 0) throw new NotFoundError(`container ${JSON.stringify(id)}: not found`);
      this.db.markDirty();
    });
  }

  private read(ns: string, id: string): Container | undefined {
    const row = this.db
      .stmt(`SELECT ${SELECT_COLUMNS} FROM containers WHERE namespace = ? AND id = ?`)
      .get(ns, id) as ContainerRow | undefined;
    if (!row) return undefined;
    const labels = this.db
      .stmt('SELECT key, value FROM container_labels WHERE namespace = ? AND container = ?')
      .all(ns, id) as { key: string; value: string }[];
    const extensions = this.db
      .stmt(
        'SELECT container, name, type_url, value FROM container_extensions WHERE namespace = ? AND container = ?',
      )
      .all(ns, id) as ExtensionRow[];
    return toContainer(
      row,
      Object.fromEntries(labels.map((l) => [l.key, l.value])),
      groupExtensions(extensions).get(id) ?? {},
    );
  }

  private writeMaps(ns: string, c: Container): void {
    this.db.stmt('DELETE FROM container_labels WHERE namespace = ? AND container = ?').run(ns, c.id);
    this.db.stmt('DELETE FROM container_extensions WHERE namespace = ? AND container = ?').run(ns, c.id);
    const label = this.db.stmt(
      'INSERT INTO container_labels (namespace, container, key, value) VALUES (?, ?, ?, ?)',
    );
    for (const [k, v] of Object.entries(c.labels)) label.run(ns, c.id, k, v);
    const ext = this.db.stmt(
      'INSERT INTO container_extensions (namespace, container, name, type_url, value) VALUES (?, ?, ?, ?, ?)',
    );
    for (const [k, v] of Object.entries(c.extensions)) ext.run(ns, c.id, k, v.typeUrl, bytes(v.value));
  }
}

const bytes = (v: Uint8Array | undefined | null): Buffer => (v ? Buffer.from(v) : Buffer.alloc(0));
const copyAny = (v: AnyValue): AnyValue => ({ typeUrl: v.typeUrl, value: bytes(v.value) });

/** The stored form of a validated input: empty labels dropped, Any values as Buffers. */
function normalise(c: ContainerInput, createdAt: Date, updatedAt: Date): Container {
  const labels: Labels = {};
  for (const [k, v] of Object.entries(c.labels ?? {})) if (v !== '') labels[k] = v;
  const extensions: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(c.extensions ?? {})) extensions[k] = copyAny(v);
  const runtime: Container['runtime'] = { name: c.runtime.name };
  if (c.runtime.options) runtime.options = copyAny(c.runtime.options);
  return {
    id: c.id,
    labels,
    image: c.image ?? '',
    runtime,
    spec: copyAny(c.spec!),
    snapshotter: c.snapshotter ?? '',
    snapshotKey: c.snapshotKey ?? '',
    extensions,
    sandbox: c.sandbox ?? '',
    createdAt,
    updatedAt,
  };
}

function rowValues(c: Container): unknown[] {
  return [
    c.id,
    c.image,
    c.runtime.name,
    c.runtime.options?.typeUrl ?? null,
    c.runtime.options ? c.runtime.options.value : null,
    c.spec!.typeUrl,
    c.spec!.value,
    c.snapshotter,
    c.snapshotKey,
    c.sandbox,
    toNanos(c.createdAt),
    toNanos(c.updatedAt),
  ];
}

function groupExtensions(rows: readonly ExtensionRow[]): Map<string, Record<string, AnyValue>> {
  const out = new Map<string, Record<string, AnyValue>>();
  for (const r of rows) {
    const m = out.get(r.container) ?? {};
    m[r.name] = { typeUrl: r.type_url, value: r.value };
    out.set(r.container, m);
  }
  return out;
}

function toContainer(row: ContainerRow, labels: Labels, extensions: Record<string, AnyValue>): Container {
  const runtime: Container['runtime'] = { name: row.runtime_name };
  if (row.runtime_options_type !== null) {
    runtime.options = { typeUrl: row.runtime_options_type, value: row.runtime_options ?? Buffer.alloc(0) };
  }
  return {
    id: row.id,
    labels,
    image: row.image,
    runtime,
    spec: { typeUrl: row.spec_type, value: row.spec },
    snapshotter: row.snapshotter,
    snapshotKey: row.snapshot_key,
    extensions,
    sandbox: row.sandbox,
    createdAt: nsDate(row.created_at),
    updatedAt: nsDate(row.updated_at),
  };
}

/** What a container keeps alive: its snapshot and whatever its gc.ref labels name. */
function containerReferences(
  ns: string,
  c: Pick<Container, 'labels' | 'snapshotter' | 'snapshotKey'>,
): GCNode[] {
  const out: GCNode[] = [];
  if (c.snapshotter && c.snapshotKey) {
    out.push({ type: `snapshots/${c.snapshotter}`, namespace: ns, id: c.snapshotKey });
  }
  out.push(...labelReferences(ns, Object.entries(c.labels)));
  return out;
}

/**
 * Containers for the collector: every container is a root (never swept) referencing its
 * snapshot and following its `containerd.io/gc.ref.*` labels, as containerd.
 */
export function containerKind(db: MetadataDB): ResourceKind {
  return {
    type: 'containers',
    inUse: (ns) =>
      db.stmt('SELECT 1 FROM containers WHERE namespace = ? LIMIT 1').get(ns) ? 'containers' : undefined,
    roots: () =>
      (db.stmt('SELECT namespace, id FROM containers').all() as { namespace: string; id: string }[]).map(
        (r): GCNode => ({ type: 'containers', namespace: r.namespace, id: r.id }),
      ),
    references(node) {
      const row = db
        .stmt('SELECT snapshotter, snapshot_key FROM containers WHERE namespace = ? AND id = ?')
        .get(node.namespace, node.id) as { snapshotter: string; snapshot_key: string } | undefined;
      if (!row) return [];
      const labels = db
        .stmt(
          "SELECT key, value FROM container_labels WHERE namespace = ? AND container = ? AND key LIKE 'containerd.io/gc.ref.%'",
        )
        .all(node.namespace, node.id) as { key: string; value: string }[];
      return containerReferences(node.namespace, {
        snapshotter: row.snapshotter,
        snapshotKey: row.snapshot_key,
        labels: Object.fromEntries(labels.map((l) => [l.key, l.value])),
      });
    },
    // Containers are only ever removed by a client.
    all: () => [],
    remove: () => {},
  };
}
