import {
  type Context,
  InvalidArgumentError,
  isNotFound,
  type Labels,
  type NamespaceStore,
  type Publisher,
  Topics,
  validateLabels,
  withNamespace,
} from '@berth/api';

export interface Namespace {
  name: string;
  labels: Labels;
}

/**
 * The namespaces service layer: the metadata namespace store plus events. Namespace calls
 * carry the namespace in the request, not in the context.
 */
export class NamespacesLocal {
  constructor(
    private readonly store: NamespaceStore,
    private readonly publisher: Publisher,
  ) {}

  /** Events about a namespace are published in the caller's namespace, or in it when none. */
  private eventContext(ctx: Context, name: string): Context {
    return ctx.namespace ? ctx : withNamespace(ctx, name);
  }

  /**
   * A namespace and its labels. A well-formed name nobody created yet has no labels, as in
   * containerd (whose Get never says NotFound): its clients read default-runtime and
   * default-snapshotter labels before the first write creates the namespace. A malformed
   * name stays InvalidArgument.
   */
  async get(ctx: Context, name: string): Promise<Namespace> {
    try {
      return { name, labels: await this.store.labels(ctx, name) };
    } catch (err) {
      if (isNotFound(err)) return { name, labels: {} };
      throw err;
    }
  }

  async list(ctx: Context): Promise<Namespace[]> {
    const names = await this.store.list(ctx);
    const out: Namespace[] = [];
    for (const name of names) out.push({ name, labels: await this.store.labels(ctx, name) });
    return out;
  }

  async create(ctx: Context, ns: Namespace): Promise<Namespace> {
    const labels = ns.labels ?? {};
    await this.store.create(ctx, ns.name, labels);
    await this.publisher.publish(
      this.eventContext(ctx, ns.name),
      Topics.namespaceCreate,
      'containerd.events.NamespaceCreate',
      {
        name: ns.name,
        labels,
      },
    );
    return { name: ns.name, labels };
  }

  /**
   * Updates labels: no paths replaces them all; `labels` too; `labels.<key>` sets one key
   * (an empty or missing value removes it). Any other path is InvalidArgument.
   */
  async update(ctx: Context, ns: Namespace, paths: readonly string[]): Promise<Namespace> {
    const labels = ns.labels ?? {};
    for (const path of paths) {
      if (path !== 'labels' && !path.startsWith('labels.')) {
        throw new InvalidArgumentError(`cannot update "${path}" field`);
      }
    }
    validateLabels(labels);
    const replaceAll = paths.length === 0 || paths.includes('labels');
    // As containerd: labelling a namespace that does not exist yet creates it.
    const current = replaceAll
      ? await this.store.labels(ctx, ns.name).catch((e: unknown) => {
          if (isNotFound(e)) return {};
          throw e;
        })
      : {};
    if (replaceAll) {
      for (const k of Object.keys(current))
        if (!(k in labels)) await this.store.setLabel(ctx, ns.name, k, '');
      for (const [k, v] of Object.entries(labels)) await this.store.setLabel(ctx, ns.name, k, v);
    }
    for (const path of paths) {
      if (!path.startsWith('labels.')) continue;
      const key = path.slice('labels.'.length);
      await this.store.setLabel(ctx, ns.name, key, labels[key] ?? '');
    }
    await this.publisher.publish(
      this.eventContext(ctx, ns.name),
      Topics.namespaceUpdate,
      'containerd.events.NamespaceUpdate',
      {
        name: ns.name,
        labels,
      },
    );
    return this.get(ctx, ns.name);
  }

  async delete(ctx: Context, name: string): Promise<void> {
    await this.store.delete(ctx, name);
    await this.publisher.publish(
      withNamespace(ctx, name),
      Topics.namespaceDelete,
      'containerd.events.NamespaceDelete',
      {
        name,
      },
    );
  }
}
