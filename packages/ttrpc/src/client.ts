import * as net from 'node:net';
import {
  type BerthError,
  CanceledError,
  DeadlineExceededError,
  FailedPreconditionError,
  fromGrpcStatus,
  InvalidArgumentError,
  isBerthError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  UnknownError,
} from '@berth/api';
import type { Service, Type } from 'protobufjs';
import { drained, sendFrame, writeFrame } from './channel';
import { decodeResponse, encodeRequestFrame, type Payload } from './envelope';
import { Flag, FrameDecoder, type FrameSink, HEADER_LENGTH, MESSAGE_LENGTH_MAX, MessageType } from './frame';
import { type MetadataInit, metadataList, socketPath } from './metadata';
import {
  apiService,
  decodePayload,
  type MethodTypes,
  messageBytes,
  methodTypesOf,
  serviceLookup,
  toPayload,
} from './methods';
import { MessageQueue } from './queue';

export interface TtrpcClientOptions {
  /** Called once when the connection is gone, whether close() or the peer ended it. */
  onClose?: (err?: Error) => void;
  /** Services whose types are not in @berth/api's proto tree. */
  services?: readonly Service[];
}

export interface ConnectOptions extends TtrpcClientOptions {
  /** Give up connecting after this long (DeadlineExceededError). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Deadline of the call; also sent to the server as timeout_nano. */
  timeoutMs?: number;
  /** Sent as `containerd-namespace-ttrpc`, the key containerd's shims read. */
  namespace?: string;
  metadata?: MetadataInit;
  /** Aborting rejects the call with CanceledError (the server is not told: ttrpc has no cancel). */
  signal?: AbortSignal;
}

/** The client side of a streaming call. Iterating yields the server's messages. */
export interface ClientStream<Req = any, Res = any> extends AsyncIterable<Res> {
  /** Sends one message (client-streaming methods only). */
  send(message: Req): Promise<void>;
  /** Tells the server no more messages follow. */
  closeSend(): void;
  /** The next server message, or undefined once the stream ended cleanly. */
  recv(): Promise<Res | undefined>;
  /** Stops waiting for the stream locally; recv() rejects with CanceledError. */
  cancel(): void;
}

/** What client.service() returns: each method under its proto name and its lowerCamel name. */
export type ServiceClient = Record<string, (request?: any, options?: CallOptions) => any>;

const CLOSED_MESSAGE = 'ttrpc: closed';
const MAX_STREAM_ID = 0xffffffff;
const MAX_TIMER_MS = 0x7fffffff;

/**
 * A ttrpc client over one connection. Calls are multiplexed on odd, increasing
 * stream ids; losing the connection rejects every pending call with
 * UnavailableError("ttrpc: closed").
 */
export class TtrpcClient {
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private readonly lookups = new Map<string, (method: string) => MethodTypes | undefined>();
  private readonly serviceClients = new Map<string, ServiceClient>();
  private readonly onCloseHook: ((err?: Error) => void) | undefined;
  private nextId = 1;
  private isClosed = false;
  private socketError: Error | undefined;
  private readonly closedPromise: Promise<void>;

  /** Connects to `unix:///path`, `/path` or an abstract "\0name". */
  static connect(address: string, options: ConnectOptions = {}): Promise<TtrpcClient> {
    let file: string;
    try {
      file = socketPath(address);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const socket = net.connect(file);
      let timer: NodeJS.Timeout | undefined;
      const onError = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        reject(connectError(address, err));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new TtrpcClient(socket, options));
      });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          socket.off('error', onError);
          socket.destroy();
          reject(
            new DeadlineExceededError(`ttrpc: connect ${address}: timed out after ${options.timeoutMs}ms`),
          );
        }, options.timeoutMs);
      }
    });
  }

  /** Wraps a connected socket. */
  constructor(
    private readonly socket: net.Socket,
    options: TtrpcClientOptions = {},
  ) {
    this.onCloseHook = options.onClose;
    const sink: FrameSink = {
      frame: (streamId, type, flags, payload) => this.onFrame(streamId, type, flags, payload),
      oversized: (streamId, _type, length) => this.onOversized(streamId, length),
    };
    this.decoder = new FrameDecoder(sink);
    for (const svc of options.services ?? []) {
      const name = svc.fullName.startsWith('.') ? svc.fullName.slice(1) : svc.fullName;
      this.lookups.set(name, serviceLookup(name, svc));
    }
    let resolveClosed!: () => void;
    this.closedPromise = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', (err) => {
      this.socketError = err;
    });
    socket.on('close', () => {
      this.teardown();
      resolveClosed();
    });
    if (socket.destroyed) {
      // Handed a dead socket: its 'close' may have fired already.
      queueMicrotask(() => {
        this.teardown();
        resolveClosed();
      });
    }
  }

  /** True once the connection is gone (close() or the peer). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Number of calls and streams waiting for the server. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** A unary call: encodes `request`, resolves with the decoded response. */
  call<Res = any, Req extends object = any>(
    service: string,
    method: string,
    request: Req,
    options: CallOptions = {},
  ): Promise<Res> {
    if (this.isClosed) return Promise.reject(this.closedError());
    let types: MethodTypes;
    let payload: Payload;
    try {
      types = this.types(service, method);
      if (types.requestStream || types.responseStream) {
        throw new FailedPreconditionError(`ttrpc: ${service}/${method} is a streaming method: use stream()`);
      }
      payload = requestPayload(service, method, types.requestType, request);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.unary(service, method, payload, types.responseType, options);
  }

  /** A unary call with an already encoded payload; resolves with the raw response payload. */
  callRaw(service: string, method: string, payload: Buffer, options: CallOptions = {}): Promise<Buffer> {
    return this.unary(service, method, payload, null, options);
  }

  /**
   * Opens a streaming call. For a server stream `request` is the one request; for a
   * client stream messages go through send() and `request` is optional.
   */
  stream<Req = any, Res = any>(
    service: string,
    method: string,
    request?: Req,
    options: CallOptions = {},
  ): ClientStream<Req, Res> {
    if (this.isClosed) throw this.closedError();
    const types = this.types(service, method);
    const payload: Payload =
      types.requestStream && request === undefined
        ? undefined
        : requestPayload(service, method, types.requestType, (request ?? {}) as object);
    const flags = types.requestStream ? Flag.REMOTE_OPEN : Flag.REMOTE_CLOSED;
    const frame = this.encode(service, method, payload, options);
    const id = this.allocateId();
    const p = new Pending(this, id, service, method, types.responseType);
    const stream = new ClientStreamImpl(this, p, types);
    p.stream = stream;
    this.track(p, options);
    sendFrame(this.socket, frame, id, MessageType.REQUEST, flags);
    return stream as ClientStream<Req, Res>;
  }

  /**
   * The methods of a service as async functions: unary ones return a Promise of the
   * response, streaming ones a ClientStream. Types come from `types` or @berth/api.
   */
  service<T extends object = ServiceClient>(name: string, types?: Service): T {
    let client = this.serviceClients.get(name);
    if (client === undefined) {
      const svc = types ?? apiService(name);
      if (types !== undefined) this.lookups.set(name, serviceLookup(name, types));
      client = {};
      for (const m of svc.methodsArray) {
        const t = methodTypesOf(m);
        const method = m.name;
        const fn =
          t.requestStream || t.responseStream
            ? (request?: any, options?: CallOptions) => this.stream(name, method, request, options)
            : (request?: any, options?: CallOptions) => this.call(name, method, request ?? {}, options);
        client[method] = fn;
        client[method.charAt(0).toLowerCase() + method.slice(1)] = fn;
      }
      this.serviceClients.set(name, client);
    }
    return client as T;
  }

  /** Closes the connection; pending calls reject with UnavailableError("ttrpc: closed"). */
  close(): Promise<void> {
    this.socket.destroy();
    return this.closedPromise;
  }

  private onFrame(streamId: number, type: number, flags: number, payload: Buffer): void {
    const p = this.pending.get(streamId);
    if (p === undefined) return; // a late answer to a call that timed out or was canceled
    if (p.stream !== null) {
      p.stream.onFrame(type, flags, payload);
      return;
    }
    this.settle(p);
    if (type !== MessageType.RESPONSE) {
      p.reject(
        new UnknownError(`ttrpc: ${p.service}/${p.method}: unexpected message type ${type} on a unary call`),
      );
      return;
    }
    try {
      const res = decodeResponse(payload);
      if (res.code !== 0) p.reject(fromGrpcStatus({ code: res.code, message: res.message }));
      else if (p.responseType === null) p.resolve(res.payload);
      else p.resolve(decodePayload(p.responseType, res.payload, `${p.service}/${p.method} response`));
    } catch (err) {
      p.reject(err);
    }
  }

  private onOversized(streamId: number, length: number): void {
    const p = this.pending.get(streamId);
    if (p === undefined) return;
    this.settle(p);
    p.fail(
      new ResourceExhaustedError(
        `message length ${length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
      ),
    );
  }

  // internals shared with Pending and ClientStreamImpl

  /** @internal forgets a pending call: no more frames reach it, its timer and abort listener go. */
  settle(p: Pending): void {
    if (this.pending.get(p.id) === p) this.pending.delete(p.id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.signal?.removeEventListener('abort', p);
  }

  /** @internal writes a data frame of a stream, waiting when the socket is full. */
  async sendData(id: number, flags: number, body: Buffer): Promise<void> {
    if (this.isClosed) throw this.closedError();
    if (!writeFrame(this.socket, id, MessageType.DATA, flags, body)) {
      if (this.socket.destroyed) throw this.closedError();
      await drained(this.socket);
    }
  }

  /** @internal */
  closedError(): UnavailableError {
    return new UnavailableError(CLOSED_MESSAGE, this.socketError ? { cause: this.socketError } : undefined);
  }

  private unary(
    service: string,
    method: string,
    payload: Payload,
    responseType: Type | null,
    options: CallOptions,
  ): Promise<any> {
    let frame: Buffer;
    let id: number;
    try {
      frame = this.encode(service, method, payload, options);
      id = this.allocateId();
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const p = new Pending(this, id, service, method, responseType);
      p.resolve = resolve;
      p.reject = reject;
      this.track(p, options);
      sendFrame(this.socket, frame, id, MessageType.REQUEST, 0);
    });
  }

  private encode(service: string, method: string, payload: Payload, options: CallOptions): Buffer {
    if (this.isClosed) throw this.closedError();
    const { signal, timeoutMs } = options;
    if (signal?.aborted) throw cancelError(service, method, signal);
    if (timeoutMs !== undefined && !(timeoutMs > 0)) {
      throw new InvalidArgumentError(`ttrpc: ${service}/${method}: invalid timeout ${timeoutMs}ms`);
    }
    let frame: Buffer;
    try {
      frame = encodeRequestFrame(
        service,
        method,
        payload,
        timeoutMs === undefined ? 0 : Math.round(timeoutMs * 1e6),
        metadataList(options.metadata, options.namespace),
      );
    } catch (err) {
      throw new InvalidArgumentError(
        `ttrpc: ${service}/${method}: encode request: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const length = frame.length - HEADER_LENGTH;
    if (length > MESSAGE_LENGTH_MAX) {
      throw new ResourceExhaustedError(
        `ttrpc: ${service}/${method}: request of ${length} bytes exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`,
      );
    }
    return frame;
  }

  private allocateId(): number {
    const id = this.nextId;
    if (id > MAX_STREAM_ID) throw new UnavailableError('ttrpc: stream ids exhausted on this connection');
    this.nextId += 2;
    return id;
  }

  private track(p: Pending, options: CallOptions): void {
    this.pending.set(p.id, p);
    const { timeoutMs, signal } = options;
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
      p.timeoutMs = timeoutMs;
      p.timer = setTimeout(expire, timeoutMs, p);
    }
    if (signal !== undefined) {
      p.signal = signal;
      signal.addEventListener('abort', p, { once: true });
    }
  }

  private types(service: string, method: string): MethodTypes {
    let lookup = this.lookups.get(service);
    if (lookup === undefined) {
      lookup = serviceLookup(service, apiService(service));
      this.lookups.set(service, lookup);
    }
    const types = lookup(method);
    if (types === undefined) throw new NotFoundError(`ttrpc: method ${service}/${method}: not found`);
    return types;
  }

  private teardown(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const err = this.closedError();
    for (const p of this.pending.values()) {
      this.settle(p);
      p.fail(err);
    }
    this.pending.clear();
    this.onCloseHook?.(this.socketError);
  }
}

function requestPayload(service: string, method: string, type: Type, value: object): Payload {
  try {
    return toPayload(type, value);
  } catch (err) {
    throw new InvalidArgumentError(`ttrpc: ${service}/${method}: encode request: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function connectError(address: string, err: NodeJS.ErrnoException): BerthError {
  if (err.code === 'ENOENT')
    return new NotFoundError(`ttrpc: connect ${address}: no such socket`, { cause: err });
  return new UnavailableError(`ttrpc: connect ${address}: ${err.message}`, { cause: err });
}

function cancelError(service: string, method: string, signal: AbortSignal): BerthError {
  const reason: unknown = signal.reason;
  if (isBerthError(reason)) return reason;
  return new CanceledError(`ttrpc: ${service}/${method}: canceled`, { cause: reason });
}

function expire(p: Pending): void {
  p.client.settle(p);
  p.fail(
    new DeadlineExceededError(`ttrpc: ${p.service}/${p.method}: deadline exceeded after ${p.timeoutMs}ms`),
  );
}

const noop = (): void => {};
const EMPTY = Buffer.alloc(0);

/** A call waiting for the server; also the abort listener of its signal (handleEvent). */
class Pending {
  resolve: (value: any) => void = noop;
  reject: (err: unknown) => void = noop;
  stream: ClientStreamImpl | null = null;
  timer: NodeJS.Timeout | undefined;
  timeoutMs = 0;
  signal: AbortSignal | undefined;

  constructor(
    readonly client: TtrpcClient,
    readonly id: number,
    readonly service: string,
    readonly method: string,
    readonly responseType: Type | null,
  ) {}

  fail(err: unknown): void {
    if (this.stream !== null) this.stream.fail(err);
    else this.reject(err);
  }

  handleEvent(): void {
    this.client.settle(this);
    this.fail(cancelError(this.service, this.method, this.signal!));
  }
}

class ClientStreamImpl implements ClientStream {
  private readonly queue = new MessageQueue<Buffer>();
  private sendClosed: boolean;

  constructor(
    private readonly client: TtrpcClient,
    private readonly p: Pending,
    private readonly types: MethodTypes,
  ) {
    this.sendClosed = !types.requestStream;
  }

  fail(err: unknown): void {
    this.queue.fail(err);
  }

  onFrame(type: number, flags: number, payload: Buffer): void {
    const { p, types } = this;
    if (type === MessageType.RESPONSE) {
      this.client.settle(p);
      try {
        const res = decodeResponse(payload);
        if (res.code !== 0) {
          this.queue.fail(fromGrpcStatus({ code: res.code, message: res.message }));
          return;
        }
        if (!types.responseStream) this.queue.push(res.payload);
        this.queue.end();
      } catch (err) {
        this.queue.fail(err);
      }
      return;
    }
    if (type !== MessageType.DATA) return;
    if (!types.responseStream) {
      this.client.settle(p);
      this.queue.fail(
        new UnknownError(`ttrpc: ${p.service}/${p.method}: received data from a non-streaming server`),
      );
      return;
    }
    if ((flags & Flag.NO_DATA) === 0) this.queue.push(payload);
    if ((flags & Flag.REMOTE_CLOSED) !== 0) {
      this.client.settle(p);
      this.queue.end();
    }
  }

  async send(message: unknown): Promise<void> {
    const { p } = this;
    if (!this.types.requestStream) {
      throw new FailedPreconditionError(`ttrpc: ${p.service}/${p.method} does not stream requests`);
    }
    if (this.sendClosed)
      throw new FailedPreconditionError(`ttrpc: ${p.service}/${p.method}: send after closeSend`);
    let body: Buffer;
    try {
      body = messageBytes(this.types.requestType, message as object);
    } catch (err) {
      throw new InvalidArgumentError(
        `ttrpc: ${p.service}/${p.method}: encode request: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (body.length > MESSAGE_LENGTH_MAX) {
      throw new ResourceExhaustedError(
        `ttrpc: ${p.service}/${p.method}: message of ${body.length} bytes exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`,
      );
    }
    await this.client.sendData(p.id, 0, body);
  }

  closeSend(): void {
    if (this.sendClosed) return;
    this.sendClosed = true;
    // A failure here means the connection is gone, which recv() reports.
    if (!this.client.closed)
      this.client.sendData(this.p.id, Flag.REMOTE_CLOSED | Flag.NO_DATA, EMPTY).catch(noop);
  }

  async recv(): Promise<unknown> {
    const bytes = await this.queue.next();
    if (bytes === undefined) return undefined;
    const { p } = this;
    return decodePayload(this.types.responseType, bytes, `${p.service}/${p.method} response`);
  }

  cancel(): void {
    const { p } = this;
    this.client.settle(p);
    this.queue.fail(new CanceledError(`ttrpc: ${p.service}/${p.method}: canceled`));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<unknown> {
    for (;;) {
      const m = await this.recv();
      if (m === undefined) return;
      yield m;
    }
  }
}
