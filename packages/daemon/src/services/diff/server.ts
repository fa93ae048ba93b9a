import { type Descriptor, grpcService, type Mount } from '@berth/api';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { unary } from '../../server/handlers';
import type { Differ } from './walking';

export const DIFF_SERVICE = 'containerd.services.diff.v1.Diff';

interface DescriptorMessage {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

interface MountMessage {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

const toMounts = (ms: MountMessage[] | undefined): Mount[] =>
  (ms ?? []).map((m) => {
    const out: Mount = { type: m.type, source: m.source, options: [...(m.options ?? [])] };
    if (m.target) out.target = m.target;
    return out;
  });

const toDescriptor = (d: DescriptorMessage | null | undefined): Descriptor => {
  const out: Descriptor = {
    mediaType: d?.mediaType ?? '',
    digest: d?.digest ?? '',
    size: Number(d?.size ?? 0),
  };
  if (d?.annotations && Object.keys(d.annotations).length > 0) out.annotations = { ...d.annotations };
  return out;
};

const fromDescriptor = (d: Descriptor): DescriptorMessage => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: d.size,
  annotations: { ...(d.annotations ?? {}) },
});

/** containerd.services.diff.v1.Diff over the diff service layer. */
export class DiffServer implements GrpcService {
  constructor(
    private readonly differ: Differ,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const opts = (method: string) => ({ log: this.log, method: `Diff/${method}` });
    server.addService(grpcService(DIFF_SERVICE), {
      // payloads (stream processor data) are accepted and unused: berth has no stream processors.
      Apply: unary(async (ctx, req: { diff: DescriptorMessage | null; mounts: MountMessage[] }) => {
        const applied = await this.differ.apply(ctx, toDescriptor(req.diff), toMounts(req.mounts));
        return { applied: fromDescriptor(applied) };
      }, opts('Apply')),
      Diff: unary(
        async (
          ctx,
          req: {
            left: MountMessage[];
            right: MountMessage[];
            mediaType: string;
            ref: string;
            labels: Record<string, string>;
          },
        ) => {
          const desc = await this.differ.compare(ctx, toMounts(req.left), toMounts(req.right), {
            mediaType: req.mediaType || undefined,
            ref: req.ref || undefined,
            labels: req.labels && Object.keys(req.labels).length > 0 ? req.labels : undefined,
          });
          return { diff: fromDescriptor(desc) };
        },
        opts('Diff'),
      ),
    });
  }
}
