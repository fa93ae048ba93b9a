import {
  AlreadyExistsError,
  applyLabelPaths,
  type Context,
  type Descriptor,
  type Image,
  type ImageStore,
  InvalidArgumentError,
  type Labels,
  labelField,
  NotFoundError,
  parseDigest,
  parseFilters,
  preciseNow,
  requireNamespace,
  toNanos,
  validateLabels,
} from '@berth/api';
import type { MetadataDB } from './db';
import { type GCNode, labelReferences, nodeKey, type ResourceKind } from './gc';
import { groupLabels } from './label-rows';
import { nsColumn, nsDate } from './time';

interface ImageRow {
  name: string;
  target_media_type: string;
  target_digest: string;
  target_size: number;
  created_at: string;
  updated_at: string;
}

type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

const COLUMNS = `name, target_media_type, target_digest, target_size, ${nsColumn('created_at')}, ${nsColumn('updated_at')}`;

/** Checks what is stored of an image, as containerd: a name, labels, and a target it can follow. */
export function validateImage(image: ImageInput): void {
  if (typeof image?.name !== 'string' || image.name === '') {
    throw new InvalidArgumentError('image name must not be empty');
  }
  const where = `image ${JSON.stringify(image.name)}`;
  validateLabels(image.labels);
  const target = image.target as Partial<Descriptor> | undefined;
  if (!target) throw new InvalidArgumentError(`${where}: target must be set`);
  try {
    parseDigest(target.digest ?? '');
  } catch (e) {
    throw new InvalidArgumentError(
      `${where}: target digest ${JSON.stringify(target.digest ?? '')} invalid: ${(e as Error).message}`,
      { cause: e },
    );
  }
  if (!Number.isSafeInteger(target.size) || (target.size as number) <= 0) {
    throw new InvalidArgumentError(`${where}: target size must be greater than zero, got ${target.size}`);
  }
  if (!target.mediaType) throw new InvalidArgumentError(`${where}: target media type must be set`);
  validateLabels(target.annotations);
}

/**
 * Images in SQLite (containerd's metadata image store): a name per namespace pointing at a
 * target descriptor (media type, digest, size and annotations are kept, as containerd), with
 * labels. Each image is a GC root holding its target and what its gc.ref labels name.
 */
export class MetadataImageStore implements ImageStore {
  constructor(private readonly db: MetadataDB) {}

  async get(ctx: Context, name: string): Promise<Image> {
    const ns = requireNamespace(ctx);
    const image = this.db.view(() => this.read(ns, name));
    if (!image) throw notFound(name);
    return image;
  }

  /** Filters on `name`, `target.digest`, `target.mediatype`, `labels.<k>`, `annotations.<k>`. */
  async list(ctx: Context, filters?: string[]): Promise<Image[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const images = this.db.view(() => {
      const rows = this.db
        .stmt(`SELECT ${COLUMNS} FROM images WHERE namespace = ? ORDER BY name`)
        .all(ns) as ImageRow[];
      const labels = groupLabels(
        this.db.stmt('SELECT image, key, value FROM image_labels WHERE namespace = ?').all(ns) as {
          image: string;
          key: string;
          value: string;
        }[],
        (r) => r.image,
      );
      const annotations = groupLabels(
        this.db.stmt('SELECT image, key, value FROM image_annotations WHERE namespace = ?').all(ns) as {
          image: string;
          key: string;
          value: string;
        }[],
        (r) => r.image,
      );
      return rows.map((r) => toImage(r, labels.get(r.name) ?? {}, annotations.get(r.name)));
    });
    return images.filter((image) =>
      filter.match((path) => {
        switch (path[0]) {
          case 'name':
            return image.name || undefined;
          case 'target':
            if (path[1] === 'digest') return image.target.digest || undefined;
            if (path[1] === 'mediatype') return image.target.mediaType || undefined;
            return undefined;
          case 'labels':
            return labelField(image.labels, path);
          case 'annotations':
            return labelField(image.target.annotations, path);
          default:
            return undefined;
        }
      }),
    );
  }

  async create(ctx: Context, image: ImageInput): Promise<Image> {
    const ns = requireNamespace(ctx);
    validateImage(image);
    const now = preciseNow();
    const created: Image = {
      name: image.name,
      labels: nonEmpty(image.labels),
      target: storedTarget(image.target),
      createdAt: now,
      updatedAt: now,
    };
    this.db.transaction(`image create ${JSON.stringify(image.name)}`, () => {
      this.db.ensureNamespace(ns);
      const r = this.db
        .stmt(
          'INSERT OR IGNORE INTO images (namespace, name, target_media_type, target_digest, target_size, ' +
            'created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          ns,
          created.name,
          created.target.mediaType,
          created.target.digest,
          created.target.size,
          now.toNanos(),
          now.toNanos(),
        );
      if (r.changes === 0)
        throw new AlreadyExistsError(`image ${JSON.stringify(image.name)}: already exists`);
      this.writeMaps(ns, created);
    });
    return created;
  }

  /**
   * containerd's field paths: `labels`, `labels.<k>`, `target` (replaced as a unit),
   * `annotations`, `annotations.<k>`; with none, the whole record is replaced.
   */
  async update(ctx: Context, image: ImageInput, fieldpaths: string[] = []): Promise<Image> {
    const ns = requireNamespace(ctx);
    if (typeof image?.name !== 'string' || image.name === '') {
      throw new InvalidArgumentError('image name is required for update');
    }
    const { updated } = this.db.transaction(`image update ${JSON.stringify(image.name)}`, () => {
      const current = this.read(ns, image.name);
      if (!current) throw notFound(image.name);
      let next: ImageInput;
      if (fieldpaths.length === 0) {
        next = { name: image.name, labels: image.labels ?? {}, target: image.target };
      } else {
        next = { name: current.name, labels: current.labels, target: { ...current.target } };
        for (const path of fieldpaths) {
          if (path === 'labels' || path.startsWith('labels.')) {
            next.labels = applyLabelPaths(next.labels, image.labels ?? {}, [path]) ?? next.labels;
          } else if (path === 'annotations' || path.startsWith('annotations.')) {
            const key = path === 'annotations' ? 'labels' : `labels.${path.slice('annotations.'.length)}`;
            const annotations = applyLabelPaths(
              next.target.annotations ?? {},
              image.target?.annotations ?? {},
              [key],
            );
            next.target = { ...next.target, annotations };
          } else if (path === 'target') {
            next.target = image.target;
          } else {
            throw new InvalidArgumentError(
              `cannot update ${JSON.stringify(path)} field on image ${JSON.stringify(image.name)}`,
            );
          }
        }
      }
      validateImage(next);
      const updated: Image = {
        name: next.name,
        labels: nonEmpty(next.labels),
        target: storedTarget(next.target),
        createdAt: current.createdAt,
        updatedAt: preciseNow(),
      };
      this.db
        .stmt(
          'UPDATE images SET target_media_type = ?, target_digest = ?, target_size = ?, updated_at = ? ' +
            'WHERE namespace = ? AND name = ?',
        )
        .run(
          updated.target.mediaType,
          updated.target.digest,
          updated.target.size,
          toNanos(updated.updatedAt),
          ns,
          updated.name,
        );
      this.writeMaps(ns, updated);
      const kept = new Set(imageReferences(ns, updated).map(nodeKey));
      const released = imageReferences(ns, current).some((n) => !kept.has(nodeKey(n)));
      // What the old record held may be garbage now.
      if (released) this.db.markDirty();
      return { updated };
    });
    return updated;
  }

  /** NotFound when missing; with sync, collects garbage before returning. */
  async delete(ctx: Context, name: string, opts: { sync?: boolean } = {}): Promise<void> {
    const ns = requireNamespace(ctx);
    this.db.transaction(`image delete ${JSON.stringify(name)}`, () => {
      const r = this.db.stmt('DELETE FROM images WHERE namespace = ? AND name = ?').run(ns, name);
      if (r.changes === 0) throw notFound(name);
      this.db.markDirty();
    });
    if (opts.sync) await this.db.collectGarbage();
  }

  private read(ns: string, name: string): Image | undefined {
    const row = this.db
      .stmt(`SELECT ${COLUMNS} FROM images WHERE namespace = ? AND name = ?`)
      .get(ns, name) as ImageRow | undefined;
    if (!row) return undefined;
    const labels = this.db
      .stmt('SELECT key, value FROM image_labels WHERE namespace = ? AND image = ?')
      .all(ns, name) as { key: string; value: string }[];
    const annotations = this.db
      .stmt('SELECT key, value FROM image_annotations WHERE namespace = ? AND image = ?')
      .all(ns, name) as { key: string; value: string }[];
    return toImage(
      row,
      Object.fromEntries(labels.map((l) => [l.key, l.value])),
      annotations.length > 0 ? Object.fromEntries(annotations.map((l) => [l.key, l.value])) : undefined,
    );
  }

  private writeMaps(ns: string, image: Image): void {
    this.db.stmt('DELETE FROM image_labels WHERE namespace = ? AND image = ?').run(ns, image.name);
    this.db.stmt('DELETE FROM image_annotations WHERE namespace = ? AND image = ?').run(ns, image.name);
    const label = this.db.stmt('INSERT INTO image_labels (namespace, image, key, value) VALUES (?, ?, ?, ?)');
    for (const [k, v] of Object.entries(image.labels)) label.run(ns, image.name, k, v);
    const annotation = this.db.stmt(
      'INSERT INTO image_annotations (namespace, image, key, value) VALUES (?, ?, ?, ?)',
    );
    for (const [k, v] of Object.entries(image.target.annotations ?? {})) annotation.run(ns, image.name, k, v);
  }
}

/** The fields of a target containerd stores; empty annotation values are dropped like labels. */
function storedTarget(target: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: target.mediaType, digest: target.digest, size: target.size };
  const annotations = nonEmpty(target.annotations);
  if (Object.keys(annotations).length > 0) out.annotations = annotations;
  return out;
}

function nonEmpty(labels: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels ?? {})) if (v !== '') out[k] = v;
  return out;
}

function toImage(row: ImageRow, labels: Labels, annotations: Labels | undefined): Image {
  const target: Descriptor = {
    mediaType: row.target_media_type,
    digest: row.target_digest,
    size: row.target_size,
  };
  if (annotations && Object.keys(annotations).length > 0) target.annotations = annotations;
  return {
    name: row.name,
    labels,
    target,
    createdAt: nsDate(row.created_at),
    updatedAt: nsDate(row.updated_at),
  };
}

function notFound(name: string): NotFoundError {
  return new NotFoundError(`image ${JSON.stringify(name)}: not found`);
}

/** What an image keeps alive: its target blob and whatever its gc.ref labels name. */
function imageReferences(ns: string, image: Pick<Image, 'labels' | 'target'>): GCNode[] {
  return [
    { type: 'content', namespace: ns, id: image.target.digest },
    ...labelReferences(ns, Object.entries(image.labels)),
  ];
}

/**
 * Images for the collector: every image is a root (never swept) that references its
 * target's content and follows its `containerd.io/gc.ref.*` labels, as containerd.
 */
export function imageKind(db: MetadataDB): ResourceKind {
  return {
    type: 'images',
    inUse: (ns) =>
      db.stmt('SELECT 1 FROM images WHERE namespace = ? LIMIT 1').get(ns) ? 'images' : undefined,
    roots: () =>
      (db.stmt('SELECT namespace, name FROM images').all() as { namespace: string; name: string }[]).map(
        (r): GCNode => ({ type: 'images', namespace: r.namespace, id: r.name }),
      ),
    references(node) {
      const row = db
        .stmt('SELECT target_digest FROM images WHERE namespace = ? AND name = ?')
        .get(node.namespace, node.id) as { target_digest: string } | undefined;
      if (!row) return [];
      const labels = db
        .stmt(
          "SELECT key, value FROM image_labels WHERE namespace = ? AND image = ? AND key LIKE 'containerd.io/gc.ref.%'",
        )
        .all(node.namespace, node.id) as { key: string; value: string }[];
      return [
        { type: 'content', namespace: node.namespace, id: row.target_digest },
        ...labelReferences(
          node.namespace,
          labels.map((l) => [l.key, l.value]),
        ),
      ];
    },
    // Images are only ever removed by a client.
    all: () => [],
    remove: () => {},
  };
}
