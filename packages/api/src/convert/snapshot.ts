import type {
  Info as InfoMessage,
  Kind,
  UsageResponse as UsageMessage,
} from '../gen/containerd/services/snapshots/v1/snapshots';
import type { SnapshotInfo, SnapshotKind, SnapshotUsage } from '../snapshots';
import { fromTimestamp, toTimestamp } from '../time';

const KIND_TO_WIRE: Record<SnapshotKind, Kind> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

export function snapshotKindToWire(kind: SnapshotKind): Kind {
  return KIND_TO_WIRE[kind] ?? 'UNKNOWN';
}

/** As containerd's proxy: anything not view or active is committed. */
export function snapshotKindFromWire(kind: Kind | undefined): SnapshotKind {
  return kind === 'VIEW' ? 'view' : kind === 'ACTIVE' ? 'active' : 'committed';
}

export function snapshotInfoToWire(info: SnapshotInfo): InfoMessage {
  return {
    name: info.name,
    parent: info.parent,
    kind: snapshotKindToWire(info.kind),
    createdAt: toTimestamp(info.createdAt),
    updatedAt: toTimestamp(info.updatedAt),
    labels: { ...info.labels },
  };
}

export function snapshotInfoFromWire(m: Partial<InfoMessage> | null | undefined): SnapshotInfo {
  return {
    kind: snapshotKindFromWire(m?.kind),
    name: m?.name ?? '',
    parent: m?.parent ?? '',
    labels: { ...(m?.labels ?? {}) },
    createdAt: fromTimestamp(m?.createdAt),
    updatedAt: fromTimestamp(m?.updatedAt),
  };
}

export function snapshotUsageToWire(u: SnapshotUsage): UsageMessage {
  return { size: u.size, inodes: u.inodes };
}

export function snapshotUsageFromWire(m: Partial<UsageMessage> | null | undefined): SnapshotUsage {
  return { size: Number(m?.size ?? 0), inodes: Number(m?.inodes ?? 0) };
}
