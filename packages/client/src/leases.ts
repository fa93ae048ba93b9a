import type { Context, Labels, Lease, LeaseCreateOptions, LeaseManager, LeaseResource } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { type Timestamp, toDate, unary } from './rpc';

interface LeaseMessage {
  id: string;
  createdAt: Timestamp | null;
  labels: Labels;
}

const leaseFromMessage = (m: LeaseMessage): Lease => ({
  id: m.id,
  createdAt: toDate(m.createdAt),
  labels: { ...(m.labels ?? {}) },
});

/** A LeaseManager over containerd.services.leases.v1.Leases, as containerd's leases/proxy. */
export class RemoteLeaseManager implements LeaseManager {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async create(ctx: Context, opts: LeaseCreateOptions = {}): Promise<Lease> {
    const res = await unary<{ lease: LeaseMessage }>(
      this.client,
      'Create',
      { id: opts.id ?? '', labels: opts.labels ?? {} },
      ctx,
      this.target,
    );
    return leaseFromMessage(res.lease);
  }

  async delete(ctx: Context, id: string, opts: { sync?: boolean } = {}): Promise<void> {
    await unary(this.client, 'Delete', { id, sync: opts.sync === true }, ctx, this.target);
  }

  async list(ctx: Context, filters: string[] = []): Promise<Lease[]> {
    const res = await unary<{ leases: LeaseMessage[] }>(this.client, 'List', { filters }, ctx, this.target);
    return res.leases.map(leaseFromMessage);
  }

  async addResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void> {
    await unary(this.client, 'AddResource', { id: leaseId, resource }, ctx, this.target);
  }

  async deleteResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void> {
    await unary(this.client, 'DeleteResource', { id: leaseId, resource }, ctx, this.target);
  }

  async listResources(ctx: Context, leaseId: string): Promise<LeaseResource[]> {
    const res = await unary<{ resources: LeaseResource[] }>(
      this.client,
      'ListResources',
      { id: leaseId },
      ctx,
      this.target,
    );
    return res.resources.map((r) => ({ id: r.id, type: r.type }));
  }
}
