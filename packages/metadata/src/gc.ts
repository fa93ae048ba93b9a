/**
 * Mark and sweep over the metadata records, as containerd's metadata GC: every resource
 * kind (content, ingests, leases, and later snapshots, images, containers) says which of
 * its records are roots, what a record references, lists them all and removes one.
 */

/** One record the collector sees. `type` is also the lease resource type that holds it. */
export interface GCNode {
  /** `content`, `ingests`, `leases`, `snapshots/<snapshotter>`, ... */
  type: string;
  namespace: string;
  id: string;
}

/** What a collection removed: records (with their namespace) and backing data (without). */
export interface GCRemoved {
  type: string;
  namespace?: string;
  id: string;
}

export interface GCReport {
  removed: GCRemoved[];
  /** Bytes freed in backing stores. */
  bytes: number;
  durationMs: number;
  /**
   * The metadata phase (mark and sweep) alone, without freeing backing data: what
   * containerd's scheduler paces collections by.
   */
  metadataMs: number;
}

/**
 * A kind of resource the collector manages. The SQL-facing methods run inside the
 * collector's write transaction and must be synchronous; `cleanup` runs afterwards,
 * still under the exclusive GC lock, to free what backing stores hold.
 */
export interface ResourceKind {
  /**
   * The node types this kind owns: `content` owns nodes of type `content`;
   * `snapshots` owns `snapshots/<snapshotter>` too.
   */
  readonly type: string;
  /** What namespace delete names when this kind still has records in `namespace`. */
  inUse?(namespace: string): string | undefined;
  /**
   * Drops this kind's records of a namespace being deleted. Only kinds that do not block the
   * deletion (no inUse) have any: containerd deletes a namespace's leases and ingests with it.
   */
  dropNamespace?(namespace: string): void;
  /** Records alive on their own right (labelled roots, unexpired leases...). */
  roots(now: Date): Iterable<GCNode>;
  /** Records that `node` keeps alive. */
  references(node: GCNode): Iterable<GCNode>;
  /** Every record of this kind. */
  all(): Iterable<GCNode>;
  remove(node: GCNode): void;
  /** Frees backing data no longer referenced by any record; adds what it frees to the report. */
  cleanup?(report: GCReport): Promise<void>;
}

export const GC_ROOT_LABEL = 'containerd.io/gc.root';
export const GC_REF_CONTENT_LABEL = 'containerd.io/gc.ref.content';
export const GC_REF_SNAPSHOT_PREFIX = 'containerd.io/gc.ref.snapshot.';

/** Nodes referenced by `containerd.io/gc.ref.*` labels, in the same namespace. */
export function labelReferences(namespace: string, labels: Iterable<[string, string]>): GCNode[] {
  const out: GCNode[] = [];
  for (const [key, value] of labels) {
    if (value === '') continue;
    if (key.startsWith(GC_REF_CONTENT_LABEL)) {
      // `gc.ref.content`, `gc.ref.content.<name>` or `gc.ref.content/<name>`; not `gc.ref.contentfoo`.
      const sep = key[GC_REF_CONTENT_LABEL.length];
      if (sep === undefined || sep === '.' || sep === '/')
        out.push({ type: 'content', namespace, id: value });
    } else if (key.startsWith(GC_REF_SNAPSHOT_PREFIX)) {
      const snapshotter = key.slice(GC_REF_SNAPSHOT_PREFIX.length).split('/')[0]!;
      if (snapshotter !== '') out.push({ type: `snapshots/${snapshotter}`, namespace, id: value });
    }
  }
  return out;
}

export const nodeKey = (n: GCNode): string => `${n.type}\0${n.namespace}\0${n.id}`;

/** The kind that owns a node type: exact match, or the part before the first `/`. */
export function kindOf(kinds: readonly ResourceKind[], type: string): ResourceKind | undefined {
  const base = type.split('/')[0];
  return kinds.find((k) => k.type === type || k.type === base);
}

/** Tri-colour marking: every node reachable from the roots, keyed by nodeKey. */
export function mark(kinds: readonly ResourceKind[], now: Date): Set<string> {
  const reachable = new Set<string>();
  const grey: GCNode[] = [];
  for (const kind of kinds) grey.push(...kind.roots(now));
  while (grey.length > 0) {
    const node = grey.pop()!;
    const key = nodeKey(node);
    if (reachable.has(key)) continue;
    reachable.add(key);
    const kind = kindOf(kinds, node.type);
    if (!kind) continue; // a resource of a kind not registered here (a snapshotter not loaded)
    for (const ref of kind.references(node)) {
      if (!reachable.has(nodeKey(ref))) grey.push(ref);
    }
  }
  return reachable;
}

/** Removes every record no root reaches; returns what it removed. */
export function sweep(kinds: readonly ResourceKind[], reachable: Set<string>): GCRemoved[] {
  const removed: GCRemoved[] = [];
  for (const kind of kinds) {
    for (const node of Array.from(kind.all())) {
      if (reachable.has(nodeKey(node))) continue;
      kind.remove(node);
      removed.push({ type: node.type, namespace: node.namespace, id: node.id });
    }
  }
  return removed;
}
