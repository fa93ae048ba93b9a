import type { Context, Lease, LeaseCreateOptions, LeaseManager, LeaseResource } from '@berth/api';

/** Collects garbage now (the gc.v1 scheduler). */
export interface GCScheduler {
  scheduleAndWait(): Promise<unknown>;
}

/**
 * The leases service layer: the metadata lease manager; a synchronous delete waits for a
 * garbage collection before returning, as containerd's leases service.
 */
export class LeasesLocal implements LeaseManager {
  constructor(
    private readonly manager: LeaseManager,
    private readonly gc: GCScheduler | undefined,
  ) {}

  create(ctx: Context, opts: LeaseCreateOptions): Promise<Lease> {
    return this.manager.create(ctx, opts);
  }

  async delete(ctx: Context, id: string, opts: { sync?: boolean } = {}): Promise<void> {
    if (!this.gc) return this.manager.delete(ctx, id, opts);
    await this.manager.delete(ctx, id);
    if (opts.sync) await this.gc.scheduleAndWait();
  }

  list(ctx: Context, filters?: string[]): Promise<Lease[]> {
    return this.manager.list(ctx, filters);
  }

  addResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void> {
    return this.manager.addResource(ctx, leaseId, resource);
  }

  deleteResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void> {
    return this.manager.deleteResource(ctx, leaseId, resource);
  }

  listResources(ctx: Context, leaseId: string): Promise<LeaseResource[]> {
    return this.manager.listResources(ctx, leaseId);
  }
}
