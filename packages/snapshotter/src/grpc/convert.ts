import {
  fromTimestamp,
  type Labels,
  type Mount,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotUsage,
  type TimestampMessage,
  toTimestamp,
} from '@berth/api';

/**
 * containerd.services.snapshots.v1 messages in the loader's JS shape (camelCase,
 * int64 as number, enums as their names, Timestamp as {seconds, nanos}).
 */
export type KindMessage = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';

export interface InfoMessage {
  name: string;
  parent: string;
  kind: KindMessage;
  createdAt: TimestampMessage | null;
  updatedAt: TimestampMessage | null;
  labels: Labels;
}

export interface MountMessage {
  type: string;
  source: string;
  target: string;
  options: string[];
}

const KIND_TO_MESSAGE: Record<SnapshotKind, KindMessage> = {
  view: 'VIEW',
  active: 'ACTIVE',
  committed: 'COMMITTED',
};

/** An unset Timestamp reads as the epoch, the zero message. */
const timeOf = (t: TimestampMessage | null | undefined): Date => (t ? fromTimestamp(t) : new Date(0));

export function infoToMessage(info: SnapshotInfo): InfoMessage {
  return {
    name: info.name,
    parent: info.parent,
    kind: KIND_TO_MESSAGE[info.kind] ?? 'UNKNOWN',
    createdAt: toTimestamp(info.createdAt),
    updatedAt: toTimestamp(info.updatedAt),
    labels: { ...info.labels },
  };
}

/** As containerd's proxy: anything not view or active is committed. */
export function infoFromMessage(m: Partial<InfoMessage> | null | undefined): SnapshotInfo {
  const kind: SnapshotKind = m?.kind === 'VIEW' ? 'view' : m?.kind === 'ACTIVE' ? 'active' : 'committed';
  return {
    kind,
    name: m?.name ?? '',
    parent: m?.parent ?? '',
    labels: { ...(m?.labels ?? {}) },
    createdAt: timeOf(m?.createdAt),
    updatedAt: timeOf(m?.updatedAt),
  };
}

export function mountToMessage(m: Mount): MountMessage {
  return { type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] };
}

export function mountFromMessage(m: Partial<MountMessage>): Mount {
  const out: Mount = { type: m.type ?? '', source: m.source ?? '', options: [...(m.options ?? [])] };
  if (m.target) out.target = m.target;
  return out;
}

export function usageToMessage(u: SnapshotUsage): { size: number; inodes: number } {
  return { size: u.size, inodes: u.inodes };
}
