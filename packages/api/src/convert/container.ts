import type { Container, ContainerInput } from '../containers';
import type { Container as ContainerMessage } from '../gen/containerd/services/containers/v1/containers';
import { fromTimestamp, toTimestamp } from '../time';
import { anyFromWire, anyMapFromWire } from './any';

/** A container record as containerd.services.containers.v1.Container; times when the record has them. */
export function containerToWire(
  c: ContainerInput & Partial<Pick<Container, 'createdAt' | 'updatedAt'>>,
): ContainerMessage {
  return {
    id: c.id,
    labels: c.labels ?? {},
    image: c.image ?? '',
    runtime: c.runtime ? { name: c.runtime.name ?? '', options: c.runtime.options } : undefined,
    spec: c.spec,
    snapshotter: c.snapshotter ?? '',
    snapshotKey: c.snapshotKey ?? '',
    createdAt: c.createdAt ? toTimestamp(c.createdAt) : undefined,
    updatedAt: c.updatedAt ? toTimestamp(c.updatedAt) : undefined,
    extensions: c.extensions ?? {},
    sandbox: c.sandbox ?? '',
  };
}

/** A container record off the wire (absent times are the epoch; stores ignore them on input). */
export function containerFromWire(m: ContainerMessage | null | undefined): Container {
  const runtime: Container['runtime'] = { name: m?.runtime?.name ?? '' };
  const options = anyFromWire(m?.runtime?.options);
  if (options) runtime.options = options;
  return {
    id: m?.id ?? '',
    labels: { ...(m?.labels ?? {}) },
    image: m?.image ?? '',
    runtime,
    spec: anyFromWire(m?.spec),
    snapshotter: m?.snapshotter ?? '',
    snapshotKey: m?.snapshotKey ?? '',
    extensions: anyMapFromWire(m?.extensions),
    sandbox: m?.sandbox ?? '',
    createdAt: fromTimestamp(m?.createdAt),
    updatedAt: fromTimestamp(m?.updatedAt),
  };
}
