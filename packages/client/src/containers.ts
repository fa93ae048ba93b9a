import type { AnyValue, Container, ContainerInput, ContainerStore, Context } from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import { type Timestamp, toDate, unary } from './rpc';

interface ContainerMessage {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: { name: string; options: AnyValue | null } | null;
  spec: AnyValue | null;
  snapshotter: string;
  snapshotKey: string;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
  extensions: Record<string, AnyValue>;
  sandbox: string;
}

const anyOf = (v: AnyValue | null | undefined): AnyValue | undefined =>
  v ? { typeUrl: v.typeUrl ?? '', value: Buffer.from(v.value ?? []) } : undefined;

function containerFromMessage(m: ContainerMessage): Container {
  const runtime: Container['runtime'] = { name: m.runtime?.name ?? '' };
  const options = anyOf(m.runtime?.options);
  if (options) runtime.options = options;
  const extensions: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(m.extensions ?? {})) extensions[k] = anyOf(v)!;
  return {
    id: m.id,
    labels: { ...(m.labels ?? {}) },
    image: m.image ?? '',
    runtime,
    spec: anyOf(m.spec),
    snapshotter: m.snapshotter ?? '',
    snapshotKey: m.snapshotKey ?? '',
    extensions,
    sandbox: m.sandbox ?? '',
    createdAt: toDate(m.createdAt),
    updatedAt: toDate(m.updatedAt),
  };
}

function containerToMessage(c: ContainerInput): ContainerMessage {
  return {
    id: c.id,
    labels: c.labels ?? {},
    image: c.image ?? '',
    runtime: c.runtime ? { name: c.runtime.name ?? '', options: c.runtime.options ?? null } : null,
    spec: c.spec ?? null,
    snapshotter: c.snapshotter ?? '',
    snapshotKey: c.snapshotKey ?? '',
    extensions: c.extensions ?? {},
    sandbox: c.sandbox ?? '',
  };
}

/** A ContainerStore over containerd.services.containers.v1.Containers, as containerd's remote store. */
export class RemoteContainerStore implements ContainerStore {
  constructor(
    private readonly client: grpc.Client,
    private readonly target?: string,
  ) {}

  async get(ctx: Context, id: string): Promise<Container> {
    const res = await unary<{ container: ContainerMessage }>(this.client, 'Get', { id }, ctx, this.target);
    return containerFromMessage(res.container);
  }

  async list(ctx: Context, filters: string[] = []): Promise<Container[]> {
    const res = await unary<{ containers: ContainerMessage[] }>(
      this.client,
      'List',
      { filters },
      ctx,
      this.target,
    );
    return (res.containers ?? []).map(containerFromMessage);
  }

  async create(ctx: Context, container: ContainerInput): Promise<Container> {
    const res = await unary<{ container: ContainerMessage }>(
      this.client,
      'Create',
      { container: containerToMessage(container) },
      ctx,
      this.target,
    );
    return containerFromMessage(res.container);
  }

  async update(ctx: Context, container: ContainerInput, fieldpaths: string[] = []): Promise<Container> {
    const req: Record<string, unknown> = { container: containerToMessage(container) };
    if (fieldpaths.length > 0) req.updateMask = { paths: fieldpaths };
    const res = await unary<{ container: ContainerMessage }>(this.client, 'Update', req, ctx, this.target);
    return containerFromMessage(res.container);
  }

  async delete(ctx: Context, id: string): Promise<void> {
    await unary(this.client, 'Delete', { id }, ctx, this.target);
  }
}
