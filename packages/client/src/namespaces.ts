import type { Context, Labels, NamespaceStore, wire } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

/** A NamespaceStore over containerd.services.namespaces.v1.Namespaces. */
export class RemoteNamespaceStore implements NamespaceStore {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async create(ctx: Context, name: string, labels: Labels = {}): Promise<void> {
    await unary(this.client, 'Create', { namespace: { name, labels } }, ctx, this.target);
  }

  async labels(ctx: Context, name: string): Promise<Labels> {
    const res = await unary<wire.namespaces.GetNamespaceResponse>(
      this.client,
      'Get',
      { name },
      ctx,
      this.target,
    );
    return { ...(res.namespace?.labels ?? {}) };
  }

  /** Sets one label; an empty value removes it (the `labels.<key>` field path). */
  async setLabel(ctx: Context, name: string, key: string, value: string): Promise<void> {
    await unary(
      this.client,
      'Update',
      { namespace: { name, labels: { [key]: value } }, updateMask: [`labels.${key}`] },
      ctx,
      this.target,
    );
  }

  async list(ctx: Context): Promise<string[]> {
    const res = await unary<wire.namespaces.ListNamespacesResponse>(
      this.client,
      'List',
      {},
      ctx,
      this.target,
    );
    return res.namespaces.map((n) => n.name);
  }

  /** Every namespace with its labels, in one call. */
  async listWithLabels(ctx: Context): Promise<{ name: string; labels: Labels }[]> {
    const res = await unary<wire.namespaces.ListNamespacesResponse>(
      this.client,
      'List',
      {},
      ctx,
      this.target,
    );
    return res.namespaces.map((n) => ({ name: n.name, labels: { ...(n.labels ?? {}) } }));
  }

  async delete(ctx: Context, name: string): Promise<void> {
    await unary(this.client, 'Delete', { name }, ctx, this.target);
  }
}
