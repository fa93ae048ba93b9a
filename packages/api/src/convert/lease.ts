import type { Lease as LeaseMessage, Resource } from '../gen/containerd/services/leases/v1/leases';
import type { Lease, LeaseResource } from '../leases';
import { fromTimestamp, toTimestamp } from '../time';

export function leaseToWire(l: Lease): LeaseMessage {
  return { id: l.id, createdAt: toTimestamp(l.createdAt), labels: l.labels };
}

export function leaseFromWire(m: LeaseMessage): Lease {
  return { id: m.id, createdAt: fromTimestamp(m.createdAt), labels: { ...(m.labels ?? {}) } };
}

/** A lease resource off the wire; an absent one is empty (the manager refuses it). */
export function leaseResourceFromWire(r: Resource | null | undefined): LeaseResource {
  return { id: r?.id ?? '', type: r?.type ?? '' };
}
