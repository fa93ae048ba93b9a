import {
  AlreadyExistsError,
  type BerthError,
  type ContentStore,
  type Context,
  contentInfoToWire,
  decodeMessage,
  grpcService,
  InvalidArgumentError,
  ingestStatusToWire,
  isBerthError,
  OutOfRangeError,
  toTimestamp,
  validateDigest,
  type wire,
} from '@berth/api';
import type { Call as RawCall, RawHandler } from '@berth/grpc';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { bidi, type HandlerOptions, send, serverStream, unary } from '../../server/handlers';
import { StreamReader } from '../../server/stream-reader';
import { readContent } from './read';

export const CONTENT_SERVICE = 'containerd.services.content.v1.Content';

/** List sends infos in batches of this many. */
export const LIST_BATCH = 100;

type WriteRequest = wire.content.WriteContentRequest;
type WriteResponse = wire.content.WriteContentResponse;

/** Re-throws err with more context in its message, keeping its class (and so its code). */
function withContext(err: unknown, prefix: string): never {
  if (isBerthError(err)) {
    const Ctor = err.constructor as new (m: string, o?: { cause?: unknown }) => BerthError;
    throw new Ctor(`${prefix}: ${err.message}`, { cause: err });
  }
  throw err;
}

/**
 * containerd.services.content.v1.Content over a content store (the service layer). Write
 * follows containerd's contentserver: the first message names the ref, the writer's lock
 * is held for the life of the stream, every request gets a response carrying the offset.
 */
export class ContentServer implements GrpcService {
  constructor(
    private readonly store: ContentStore,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const opts = (method: string): HandlerOptions => ({ log: this.log, method: `Content/${method}` });
    server.addService(grpcService(CONTENT_SERVICE), {
      Info: unary((ctx, req: wire.content.InfoRequest) => this.info(ctx, req.digest), opts('Info')),
      Update: unary((ctx, req: wire.content.UpdateRequest) => this.update(ctx, req), opts('Update')),
      List: serverStream(
        (ctx, req: wire.content.ListContentRequest, call) => this.list(ctx, req.filters, call),
        opts('List'),
      ),
      Delete: unary(async (ctx, req: wire.content.DeleteContentRequest) => {
        await this.store.delete(ctx, validateDigest(req.digest));
        return {};
      }, opts('Delete')),
      Read: serverStream(
        (ctx, req: wire.content.ReadContentRequest, call) => this.read(ctx, req, call),
        opts('Read'),
      ),
      Status: unary(async (ctx, req: wire.content.StatusRequest) => {
        try {
          return { status: ingestStatusToWire(await this.store.status(ctx, req.ref)) };
        } catch (err) {
          withContext(err, `could not get status for ref ${JSON.stringify(req.ref)}`);
        }
      }, opts('Status')),
      ListStatuses: unary(
        async (ctx, req: wire.content.ListStatusesRequest) => ({
          statuses: (await this.store.listStatuses(ctx, req.filters)).map(ingestStatusToWire),
        }),
        opts('ListStatuses'),
      ),
      Abort: unary(async (ctx, req: wire.content.AbortRequest) => {
        await this.store.abort(ctx, req.ref);
        return {};
      }, opts('Abort')),
      Write: bidi(
        (ctx, call) => this.write(ctx, call as grpc.ServerDuplexStream<WriteRequest, WriteResponse>),
        opts('Write'),
      ),
    });
  }

  private async info(ctx: Context, digest: string) {
    return { info: contentInfoToWire(await this.store.info(ctx, validateDigest(digest))) };
  }

  private async update(ctx: Context, req: wire.content.UpdateRequest) {
    const digest = validateDigest(req.info?.digest ?? '');
    const info = await this.store.update(
      ctx,
      { digest, labels: req.info?.labels ?? {} },
      req.updateMask ?? [],
    );
    return { info: contentInfoToWire(info) };
  }

  private async list(
    ctx: Context,
    filters: string[],
    call: grpc.ServerWritableStream<unknown, unknown>,
  ): Promise<void> {
    let batch: wire.content.Info[] = [];
    await this.store.walk(
      ctx,
      (info) => {
        batch.push(contentInfoToWire(info));
        if (batch.length < LIST_BATCH) return;
        const full = batch;
        batch = [];
        return send(call, { info: full });
      },
      filters,
    );
    if (batch.length > 0) await send(call, { info: batch });
  }

  private read(
    ctx: Context,
    req: wire.content.ReadContentRequest,
    call: grpc.ServerWritableStream<unknown, unknown>,
  ): Promise<void> {
    return readContent(this.store, ctx, req, {
      send: (offset, data) => send(call, { offset, data }),
      get cancelled() {
        return call.cancelled;
      },
    });
  }

  /**
   * Read served on @berth/grpc's raw call (request bytes in, encoded parts out): containerd's
   * clients read a blob with one Read call per 32 KiB, so a stream object and per-message
   * serialisation would dominate. Same semantics as read().
   */
  fastPaths(): ReadonlyMap<string, RawHandler> {
    return new Map([[`/${CONTENT_SERVICE}/Read`, (call: RawCall) => this.rawRead(call)]]);
  }

  private async rawRead(call: RawCall): Promise<void> {
    try {
      const req = await call.request(decodeReadRequest);
      await readContent(this.store, call.ctx, req, {
        send: (offset, data) => call.send([readResponsePrefix(offset, data.length), data]),
        get cancelled() {
          return call.cancelled;
        },
      });
      call.finish();
    } catch (err) {
      call.fail(err);
    }
  }

  /** containerd's Write: see the class comment. */
  private async write(
    ctx: Context,
    call: grpc.ServerDuplexStream<WriteRequest, WriteResponse>,
  ): Promise<void> {
    const reader = new StreamReader<WriteRequest>(call, ctx.signal);
    let req = await reader.next();
    if (!req) return;
    const ref = req.ref;
    if (!ref) throw new InvalidArgumentError('first message must have a reference');
    let total = req.total;
    let expected = req.expected;

    const wr = await this.store.writer(ctx, { ref, desc: { size: total, digest: expected || undefined } });
    // The response is containerd's one reused message: fields set once (started_at by a
    // STAT, say) stay set in later responses. A copy is sent each time.
    const msg: WriteResponse = {
      action: 'STAT',
      startedAt: undefined,
      updatedAt: undefined,
      offset: 0,
      total: 0,
      digest: '',
    };
    try {
      // Only this stream writes the ref while it holds the lock, so the offset is tracked here.
      let offset = (await wr.status()).offset;
      for (;;) {
        msg.action = req.action;
        msg.offset = offset;

        if (req.expected) {
          expected = req.expected;
          if (await this.exists(ctx, req.expected)) {
            await wr.close().catch(() => {});
            await this.store.abort(ctx, ref).catch(() => {});
            throw new AlreadyExistsError(`blob with expected digest ${req.expected} exists`);
          }
        }
        if (req.total > 0) total = req.total;

        if (req.action === 'STAT') {
          const ws = await wr.status();
          msg.digest = wr.digest();
          msg.startedAt = toTimestamp(ws.startedAt);
          msg.updatedAt = toTimestamp(ws.updatedAt);
          msg.total = total;
        } else if (req.action === 'WRITE' || req.action === 'COMMIT') {
          if (req.offset > 0 && req.offset !== offset) {
            throw new OutOfRangeError(`write @${req.offset} must occur at current offset ${offset}`);
          }
          if (req.offset === 0 && offset > 0) {
            await wr.truncate(0);
            offset = 0;
            msg.offset = 0;
          }
          const data = req.data;
          if (data && data.length > 0) {
            await wr.write(data);
            offset += data.length;
            msg.offset = offset;
          }
          if (req.action === 'COMMIT') {
            const labels = req.labels && Object.keys(req.labels).length > 0 ? req.labels : undefined;
            await wr.commit(total, expected || undefined, labels ? { labels } : {});
          }
          msg.digest = wr.digest();
        } else {
          throw new InvalidArgumentError(`unknown write action ${JSON.stringify(req.action)}`);
        }

        const drained = send(call, { ...msg });
        if (drained) await drained;
        if (req.action === 'COMMIT') break;
        const nextReq = await reader.next();
        if (!nextReq) break;
        req = nextReq;
      }
      // Free the ref before the last response goes out: the client may reopen it at once.
      const closed = wr.close().catch(() => {});
      // containerd's handler sends its last response once more as it returns.
      const drained = send(call, { ...msg });
      if (drained) await drained;
      await closed;
    } finally {
      await wr.close().catch(() => {});
    }
  }

  private async exists(ctx: Context, digest: string): Promise<boolean> {
    try {
      await this.store.info(ctx, digest);
      return true;
    } catch {
      return false;
    }
  }
}

const decodeReadRequest = (bytes: Buffer): wire.content.ReadContentRequest =>
  decodeMessage('containerd.services.content.v1.ReadContentRequest', bytes);

/** Appends a protobuf varint. */
function putVarint(buf: Buffer, at: number, value: number): number {
  let v = value;
  while (v >= 0x80) {
    buf[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[at++] = v;
  return at;
}

/**
 * The gRPC frame prefix and protobuf header of a ReadContentResponse{offset, data}, so the
 * data Buffer itself goes out uncopied right after it: field 1 (offset, omitted when 0 as
 * proto3 does) and field 2's tag and length.
 */
export function readResponsePrefix(offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(5 + 1 + 10 + 1 + 5);
  let at = 5;
  if (offset > 0) {
    buf[at++] = 0x08;
    at = putVarint(buf, at, offset);
  }
  if (length > 0) {
    buf[at++] = 0x12;
    at = putVarint(buf, at, length);
  }
  buf[0] = 0;
  buf.writeUInt32BE(at - 5 + length, 1);
  return buf.subarray(0, at);
}
