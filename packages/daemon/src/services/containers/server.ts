import {
  type AnyValue,
  type Container,
  type ContainerInput,
  type ContainerStore,
  grpcService,
} from '@berth/api';
import type { Logger } from '../../log';
import { EMPTY, maskPaths, type Timestamp, toTimestamp } from '../../server/convert';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { send, serverStream, unary } from '../../server/handlers';

export const CONTAINERS_SERVICE = 'containerd.services.containers.v1.Containers';

interface ContainerMsg {
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

export function containerToMsg(c: Container): ContainerMsg {
  return {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime.name, options: c.runtime.options ?? null },
    spec: c.spec ?? null,
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    createdAt: toTimestamp(c.createdAt),
    updatedAt: toTimestamp(c.updatedAt),
    extensions: c.extensions,
    sandbox: c.sandbox,
  };
}

export function containerFromMsg(m: ContainerMsg | null | undefined): ContainerInput {
  const extensions: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(m?.extensions ?? {})) extensions[k] = anyOf(v)!;
  const runtime: ContainerInput['runtime'] = { name: m?.runtime?.name ?? '' };
  const options = anyOf(m?.runtime?.options);
  if (options) runtime.options = options;
  return {
    id: m?.id ?? '',
    labels: { ...(m?.labels ?? {}) },
    image: m?.image ?? '',
    runtime,
    spec: anyOf(m?.spec),
    snapshotter: m?.snapshotter ?? '',
    snapshotKey: m?.snapshotKey ?? '',
    extensions,
    sandbox: m?.sandbox ?? '',
  };
}

/** containerd.services.containers.v1.Containers. */
export class ContainersServer implements GrpcService {
  constructor(
    private readonly containers: ContainerStore,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const store = this.containers;
    const opts = (method: string) => ({ log: this.log, method: `Containers/${method}` });
    server.addService(grpcService(CONTAINERS_SERVICE), {
      Get: unary(
        async (ctx, req: { id: string }) => ({ container: containerToMsg(await store.get(ctx, req.id)) }),
        opts('Get'),
      ),
      List: unary(
        async (ctx, req: { filters: string[] }) => ({
          containers: (await store.list(ctx, req.filters)).map(containerToMsg),
        }),
        opts('List'),
      ),
      ListStream: serverStream(async (ctx, req: { filters: string[] }, call) => {
        for (const c of await store.list(ctx, req.filters)) {
          if (call.cancelled) return;
          await send(call, { container: containerToMsg(c) });
        }
      }, opts('ListStream')),
      Create: unary(
        async (ctx, req: { container: ContainerMsg | null }) => ({
          container: containerToMsg(await store.create(ctx, containerFromMsg(req.container))),
        }),
        opts('Create'),
      ),
      Update: unary(
        async (ctx, req: { container: ContainerMsg | null; updateMask: { paths: string[] } | null }) => ({
          container: containerToMsg(
            await store.update(ctx, containerFromMsg(req.container), maskPaths(req.updateMask)),
          ),
        }),
        opts('Update'),
      ),
      Delete: unary(async (ctx, req: { id: string }) => {
        await store.delete(ctx, req.id);
        return EMPTY;
      }, opts('Delete')),
    });
  }
}
