import type { Context } from './context';
import type { Labels } from './labels';

export interface Lease {
  id: string;
  createdAt: Date;
  labels: Labels;
}

/** A resource a lease holds: type is `content`, `snapshots/<snapshotter>`, `ingests`... */
export interface LeaseResource {
  id: string;
  type: string;
}

export interface LeaseCreateOptions {
  id?: string;
  labels?: Labels;
}

export interface LeaseManager {
  create(ctx: Context, opts: LeaseCreateOptions): Promise<Lease>;
  /** With sync, a garbage collection runs before the call returns. */
  delete(ctx: Context, id: string, opts?: { sync?: boolean }): Promise<void>;
  list(ctx: Context, filters?: string[]): Promise<Lease[]>;
  addResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void>;
  deleteResource(ctx: Context, leaseId: string, resource: LeaseResource): Promise<void>;
  listResources(ctx: Context, leaseId: string): Promise<LeaseResource[]>;
}

/** Label that makes a lease expire (RFC 3339 time), as containerd. */
export const LEASE_EXPIRE_LABEL = 'containerd.io/gc.expire';
