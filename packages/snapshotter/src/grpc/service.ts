import {
  CanceledError,
  type Context,
  type GrpcStatus,
  grpcService,
  isBerthError,
  isSnapshotCleaner,
  mountToWire,
  NotImplementedError,
  type Snapshotter,
  snapshotInfoFromWire,
  snapshotInfoToWire,
  snapshotUsageToWire,
  toGrpcStatus,
  type wire,
} from '@berth/api';
import { unary as grpcUnary, type Handler, type ServiceDefinition, serverStream } from '@berth/grpc';

export const SNAPSHOTS_SERVICE = 'containerd.services.snapshots.v1.Snapshots';

/** How many infos one List message carries (as containerd). */
const LIST_BATCH = 100;

export interface SnapshotsServiceOptions {
  /** Called with errors that are not berth's typed errors (bugs, unexpected system errors). */
  onUnexpectedError?: (method: string, err: unknown) => void;
}

/**
 * Picks the snapshotter a request's `snapshotter` field names. Throw a typed error for a
 * name that is not served (berthd: InvalidArgument `snapshotter not loaded: <name>`).
 */
export type SnapshotterResolver = (name: string) => Snapshotter;

const CANCELLED = new CanceledError('context canceled');

/** Every Snapshots request's fields: one handler shape serves them all. */
type Req = Partial<
  wire.snapshots.PrepareSnapshotRequest &
    wire.snapshots.CommitSnapshotRequest &
    wire.snapshots.UpdateSnapshotRequest &
    wire.snapshots.ListSnapshotsRequest
>;

/** The words containerd's errdefs classes end their messages with. */
const CLASS: Partial<Record<string, string>> = {
  ERR_NOT_FOUND: 'not found',
  ERR_ALREADY_EXISTS: 'already exists',
  ERR_INVALID_ARGUMENT: 'invalid argument',
  ERR_FAILED_PRECONDITION: 'failed precondition',
  ERR_UNAVAILABLE: 'unavailable',
  ERR_NOT_IMPLEMENTED: 'not implemented',
};

/**
 * A message as containerd puts it on the wire: ending with its class (`…: not found`), since
 * containerd's errors wrap their errdefs class. Go clients strip and re-add it; clients that
 * print the message as received (berth's CLI) then show containerd's words.
 */
function withClass(err: unknown, message: string): string {
  const cls = isBerthError(err) ? CLASS[err.code] : undefined;
  if (!cls || message === cls || message.endsWith(`: ${cls}`)) return message;
  return `${message}: ${cls}`;
}

/** Labels as an option: absent when the request has none (so a snapshotter sees no empty map). */
const withLabels = (labels: Record<string, string> | undefined) =>
  labels && Object.keys(labels).length > 0 ? { labels } : {};

/**
 * The handlers of containerd.services.snapshots.v1.Snapshots over any api.Snapshotter:
 * the one implementation berthd's Snapshots service and the standalone
 * `berth-snapshotter serve` both register. Errors leave through toGrpcStatus.
 */
export function snapshotsServiceHandlers(
  resolve: SnapshotterResolver,
  opts: SnapshotsServiceOptions = {},
): Record<string, Handler> {
  const mapError = (err: unknown): GrpcStatus => {
    const st = toGrpcStatus(err);
    return { code: st.code, details: withClass(err, st.details) };
  };
  const handlerOpts = (method: string) => ({
    method: `Snapshots/${method}`,
    mapError,
    onUnexpectedError:
      opts.onUnexpectedError && ((_: string, err: unknown) => opts.onUnexpectedError?.(method, err)),
  });
  const unary = (
    method: string,
    impl: (sn: Snapshotter, ctx: Context, req: Req) => Promise<object>,
  ): Handler =>
    grpcUnary<Req, object>((ctx, req) => impl(resolve(req.snapshotter ?? ''), ctx, req), handlerOpts(method));

  const list = serverStream<Req, object>(async (ctx, req, call) => {
    const sn = resolve(req.snapshotter ?? '');
    let batch: wire.snapshots.Info[] = [];
    const flush = async () => {
      const msg = { info: batch };
      batch = [];
      if (!call.write(msg)) {
        await new Promise<void>((res, rej) => {
          const onDrain = () => {
            call.off('cancelled', onCancel);
            res();
          };
          const onCancel = () => {
            call.off('drain', onDrain);
            rej(CANCELLED);
          };
          call.once('drain', onDrain);
          call.once('cancelled', onCancel);
        });
      }
    };
    await sn.walk(
      ctx,
      async (info) => {
        if (call.cancelled) throw CANCELLED;
        batch.push(snapshotInfoToWire(info));
        if (batch.length >= LIST_BATCH) await flush();
      },
      req.filters ?? [],
    );
    if (batch.length > 0) await flush();
  }, handlerOpts('List'));

  return {
    Prepare: unary('Prepare', async (sn, ctx, r) => ({
      mounts: (await sn.prepare(ctx, r.key ?? '', r.parent ?? '', withLabels(r.labels))).map(mountToWire),
    })),
    View: unary('View', async (sn, ctx, r) => ({
      mounts: (await sn.view(ctx, r.key ?? '', r.parent ?? '', withLabels(r.labels))).map(mountToWire),
    })),
    Mounts: unary('Mounts', async (sn, ctx, r) => ({
      mounts: (await sn.mounts(ctx, r.key ?? '')).map(mountToWire),
    })),
    Commit: unary('Commit', async (sn, ctx, r) => {
      await sn.commit(ctx, r.name ?? '', r.key ?? '', withLabels(r.labels));
      return {};
    }),
    Remove: unary('Remove', async (sn, ctx, r) => {
      await sn.remove(ctx, r.key ?? '');
      return {};
    }),
    Stat: unary('Stat', async (sn, ctx, r) => ({
      info: snapshotInfoToWire(await sn.stat(ctx, r.key ?? '')),
    })),
    Update: unary('Update', async (sn, ctx, r) => {
      const info = snapshotInfoFromWire(r.info);
      const updated = await sn.update(ctx, { name: info.name, labels: info.labels }, r.updateMask ?? []);
      return { info: snapshotInfoToWire(updated) };
    }),
    List: list,
    Usage: unary('Usage', async (sn, ctx, r) => snapshotUsageToWire(await sn.usage(ctx, r.key ?? ''))),
    Cleanup: unary('Cleanup', async (sn, ctx) => {
      if (!isSnapshotCleaner(sn)) {
        throw new NotImplementedError('snapshotter does not implement Cleanup method: not implemented');
      }
      await sn.cleanup(ctx);
      return {};
    }),
  };
}

/** The definition of the Snapshots service (from @berth/api's protos). */
export function snapshotsServiceDefinition(): ServiceDefinition {
  return grpcService(SNAPSHOTS_SERVICE);
}
