import {
  CanceledError,
  type Context,
  firstMetadataValue,
  grpcService,
  isBerthError,
  isSnapshotCleaner,
  LEASE_HEADER,
  mountToWire,
  NAMESPACE_HEADER,
  NotImplementedError,
  type Snapshotter,
  snapshotInfoFromWire,
  snapshotInfoToWire,
  snapshotUsageToWire,
  toGrpcStatus,
  type wire,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';

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

const header = (md: grpc.Metadata, key: string): string | undefined => firstMetadataValue(md.get(key));

const CANCELLED = new CanceledError('context canceled');

/** The call's namespace and lease (containerd's headers) and a signal for cancellation. */
function contextOf(
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
): Context {
  const controller = new AbortController();
  call.once('cancelled', () => controller.abort(CANCELLED));
  return {
    namespace: header(call.metadata, NAMESPACE_HEADER),
    lease: header(call.metadata, LEASE_HEADER),
    signal: controller.signal,
  };
}

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
): grpc.UntypedServiceImplementation {
  const statusOf = (method: string, err: unknown): grpc.StatusObject => {
    if (!isBerthError(err)) opts.onUnexpectedError?.(method, err);
    const st = toGrpcStatus(err);
    return {
      code: st.code,
      details: withClass(err, st.details),
      metadata: undefined as unknown as grpc.Metadata,
    };
  };
  const unary =
    (
      method: string,
      impl: (sn: Snapshotter, ctx: Context, req: Req) => Promise<object>,
    ): grpc.handleUnaryCall<Req, object> =>
    (call, callback) => {
      const run = async () => impl(resolve(call.request.snapshotter ?? ''), contextOf(call), call.request);
      run().then(
        (res) => callback(null, res),
        (err) => callback(statusOf(method, err) as grpc.ServiceError),
      );
    };

  const list: grpc.handleServerStreamingCall<Req, object> = (call) => {
    const run = async () => {
      const sn = resolve(call.request.snapshotter ?? '');
      const ctx = contextOf(call);
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
        call.request.filters ?? [],
      );
      if (batch.length > 0) await flush();
    };
    run().then(
      () => {
        if (!call.cancelled) call.end();
      },
      (err) => {
        if (!call.cancelled && !call.destroyed) call.emit('error', statusOf('List', err));
      },
    );
  };

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

/** The grpc-js definition of the Snapshots service (from @berth/api's protos). */
export function snapshotsServiceDefinition(): grpc.ServiceDefinition {
  return grpcService(SNAPSHOTS_SERVICE);
}
