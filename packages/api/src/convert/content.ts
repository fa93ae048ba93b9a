import type { ContentInfo, IngestStatus } from '../content';
import type {
  Info as InfoMessage,
  Status as StatusMessage,
} from '../gen/containerd/services/content/v1/content';
import { fromTimestamp, toTimestamp } from '../time';

export function contentInfoToWire(i: ContentInfo): InfoMessage {
  return {
    digest: i.digest,
    size: i.size,
    createdAt: toTimestamp(i.createdAt),
    updatedAt: toTimestamp(i.updatedAt),
    labels: i.labels,
  };
}

export function contentInfoFromWire(m: InfoMessage): ContentInfo {
  return {
    digest: m.digest,
    size: m.size,
    createdAt: fromTimestamp(m.createdAt),
    updatedAt: fromTimestamp(m.updatedAt),
    labels: { ...(m.labels ?? {}) },
  };
}

export function ingestStatusToWire(s: IngestStatus): StatusMessage {
  return {
    startedAt: toTimestamp(s.startedAt),
    updatedAt: toTimestamp(s.updatedAt),
    ref: s.ref,
    offset: s.offset,
    total: s.total,
    expected: s.expected,
  };
}

export function ingestStatusFromWire(m: StatusMessage): IngestStatus {
  return {
    ref: m.ref,
    offset: m.offset,
    total: m.total,
    expected: m.expected,
    startedAt: fromTimestamp(m.startedAt),
    updatedAt: fromTimestamp(m.updatedAt),
  };
}
