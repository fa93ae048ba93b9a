import {
  type Context,
  type Lease,
  type LeaseCreateOptions,
  type LeaseManager,
  type LeaseResource,
  leaseFromWire,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { unary } from './rpc';

/** A LeaseManager over containerd.services.leases.v1.Leases, as containerd's leases/proxy. */
export class RemoteLeaseManager implements LeaseManager {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async create(ctx: Context, opts: LeaseCreateOptions = {}): Promise<Lease> {
    const res = await unary<wire.leases.CreateResponse>(
      this.client,
      'Create',
      { id: opts.id ?? '', labels: opts.labels ?? {} },
      ctx,
      this.target,
    );
    return leaseFromWire(res.lease!);
  }

  async delete(ctx: Context, id: string, opts: { sync?: boolean } = {}): Promise<void> {
    await unary(this.client, 'Delete', { id, sync: opts.sync === true }, ctx, this.target);
  }

  async list(ctx: Context, filters: string[] = []): Promise<Lease[]> {
    const res = await unary<wire.leases.ListResponse>(this.client, 'List', { filters }, ctx, this.target);
    return res.leases.map(leaseFromWire);
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
