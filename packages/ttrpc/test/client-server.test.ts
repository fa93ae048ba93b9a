import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  AlreadyExistsError,
  CanceledError,
  DeadlineExceededError,
  FailedPreconditionError,
  GrpcCode,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  ResourceExhaustedError,
  UnavailableError,
  UnknownError,
} from '@berth/api';
import { type TtrpcCallContext, TtrpcClient, TtrpcServer } from '../src';
import {
  ECHO,
  echoHandlers,
  echoService,
  echoType,
  type Harness,
  RawConnection,
  startEcho,
} from './fixtures/echo';

const MiB = 1 << 20;

let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});

describe('unary calls', () => {
  it('round-trips strings, bytes, int64 and enums in the api JS shape', async () => {
    h = await startEcho();
    const res = await h.client.call(ECHO, 'Echo', {
      text: 'héllo',
      data: Buffer.from([0, 1, 255]),
      big: 2 ** 50,
      kind: 'LOUD',
    });
    expect(res).toEqual({
      text: 'héllo',
      data: Buffer.from([0, 1, 255]),
      big: 2 ** 50,
      kind: 'LOUD',
      metadata: {},
      namespace: '',
    });
  });

  it('fills defaults for fields the server left out', async () => {
    h = await startEcho();
    expect(await h.client.call(ECHO, 'Echo', {})).toEqual({
      text: '',
      data: Buffer.alloc(0),
      big: 0,
      kind: 'KIND_UNSPECIFIED',
      metadata: {},
      namespace: '',
    });
  });

  it('uses @berth/api types when a service is registered by name only', async () => {
    h = await startEcho();
    const seen: any[] = [];
    h.server.register('containerd.services.events.ttrpc.v1.Events', {
      Forward: (req: any, ctx: TtrpcCallContext) => {
        seen.push({ req, namespace: ctx.namespace });
        return undefined; // google.protobuf.Empty
      },
    });
    const envelope = {
      timestamp: { seconds: 1700000000, nanos: 5 },
      namespace: 'default',
      topic: '/tasks/exit',
      event: { typeUrl: 'containerd.events.TaskExit', value: Buffer.from([1, 2]) },
    };
    const events = h.client.service('containerd.services.events.ttrpc.v1.Events');
    expect(await events.forward({ envelope }, { namespace: 'default' })).toEqual({});
    expect(seen).toEqual([{ req: { envelope }, namespace: 'default' }]);
  });

  it('gives every method of a service under its proto and lowerCamel names', async () => {
    h = await startEcho();
    const echo = h.client.service(ECHO, echoService());
    expect(echo.Echo).toBe(echo.echo);
    expect(await echo.echo({ text: 'a' })).toMatchObject({ text: 'a' });
    const task = h.client.service('containerd.task.v2.Task');
    for (const m of ['State', 'Create', 'Start', 'Delete', 'Kill', 'Connect', 'Shutdown']) {
      expect(typeof task[m]).toBe('function');
    }
    // Our server has no Task service: the call reaches it and comes back UNIMPLEMENTED.
    await expect(task.state({ id: 'x' })).rejects.toThrow(
      new NotImplementedError('service containerd.task.v2.Task'),
    );
  });

  it('fails locally on an unknown service or method', async () => {
    h = await startEcho();
    await expect(h.client.call('no.such.Service', 'X', {})).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.client.call(ECHO, 'Nope', {})).rejects.toThrow(
      'ttrpc: method berth.test.ttrpc.Echo/Nope: not found',
    );
    await expect(h.client.call(ECHO, 'Count', {})).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('refuses misspelt fields of @berth/api messages on both sides instead of dropping them', async () => {
    h = await startEcho();
    const EVENTS = 'containerd.services.events.ttrpc.v1.Events';
    h.server.register(EVENTS, { Forward: () => ({ bogus: 1 }) });
    const local = await h.client.call(EVENTS, 'Forward', { envelop: {} }).catch((e) => e);
    expect(local).toBeInstanceOf(InvalidArgumentError);
    expect(local.message).toMatch(/Events\/Forward: encode request: .*unknown field "envelop"/);
    const remote = await h.client.call(EVENTS, 'Forward', { envelope: {} }).catch((e) => e);
    expect(remote).toBeInstanceOf(UnknownError);
    expect(remote.message).toMatch(/Events\/Forward: encode response: .*unknown field "bogus"/);
  });
});

describe('errors', () => {
  it.each([
    ['NotFound', NotFoundError],
    ['AlreadyExists', AlreadyExistsError],
    ['InvalidArgument', InvalidArgumentError],
    ['FailedPrecondition', FailedPreconditionError],
    ['Unavailable', UnavailableError],
    ['plain', UnknownError],
  ])('a handler throwing %s reaches the client as the typed error', async (error, E) => {
    h = await startEcho();
    const message = `container c1: ${error}`;
    const err = await h.client.call(ECHO, 'Fail', { error, message }).catch((e) => e);
    expect(err).toBeInstanceOf(E);
    expect(err.message).toBe(message);
  });

  it('answers UNIMPLEMENTED for unknown services and unhandled methods, as Go ttrpc', async () => {
    h = await startEcho();
    await expect(h.client.callRaw('no.such.Service', 'Get', Buffer.alloc(0))).rejects.toThrow(
      new NotImplementedError('service no.such.Service'),
    );
    await expect(h.client.call(ECHO, 'Unhandled', {})).rejects.toThrow(
      new NotImplementedError('method Unhandled'),
    );
  });

  it('answers INVALID_ARGUMENT when the payload is not the request message', async () => {
    h = await startEcho();
    const err = await h.client.callRaw(ECHO, 'Echo', Buffer.from([0x0f])).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(/decode request berth\.test\.ttrpc\.EchoRequest/);
  });

  it('rejects registering a handler for a method the service does not have', () => {
    const server = new TtrpcServer();
    expect(() => server.register(ECHO, { Nope: () => ({}) }, echoService())).toThrow(
      'ttrpc: service berth.test.ttrpc.Echo has no method "Nope"',
    );
    server.register(ECHO, {}, echoService());
    expect(() => server.register(ECHO, {}, echoService())).toThrow(AlreadyExistsError);
    expect(() => server.register('no.such.Service', {})).toThrow(NotFoundError);
  });
});

describe('metadata', () => {
  it('delivers metadata with every value, and the namespace from containerd-namespace-ttrpc', async () => {
    h = await startEcho();
    const res = await h.client.call(
      ECHO,
      'Echo',
      {},
      { namespace: 'k8s.io', metadata: { 'x-trace': ['a', 'b'], other: 'v' } },
    );
    expect(res.namespace).toBe('k8s.io');
    expect(res.metadata).toEqual({ 'containerd-namespace-ttrpc': 'k8s.io', 'x-trace': 'a,b', other: 'v' });
  });
});

describe('deadlines and cancellation', () => {
  it('rejects with DeadlineExceeded when the server is slower than timeoutMs', async () => {
    h = await startEcho();
    const err = await h.client.call(ECHO, 'Sleep', { ms: 60_000 }, { timeoutMs: 50 }).catch((e) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(err.message).toBe('ttrpc: berth.test.ttrpc.Echo/Sleep: deadline exceeded after 50ms');
    expect(h.client.inFlight).toBe(0);
    // The connection is still good for other calls.
    expect(await h.client.call(ECHO, 'Echo', { text: 'after' })).toMatchObject({ text: 'after' });
  });

  it('hands the deadline to the handler, whose signal aborts with DeadlineExceeded', async () => {
    const seen: { deadline?: number; reason?: unknown } = {};
    let aborted!: () => void;
    const abortedP = new Promise<void>((resolve) => {
      aborted = resolve;
    });
    h = await startEcho({
      ...echoHandlers,
      Sleep: (_req: any, ctx: TtrpcCallContext) =>
        new Promise((_resolve, reject) => {
          seen.deadline = ctx.deadline;
          ctx.signal.addEventListener('abort', () => {
            seen.reason = ctx.signal.reason;
            aborted();
            reject(ctx.signal.reason);
          });
        }),
    });
    const before = Date.now();
    await expect(h.client.call(ECHO, 'Sleep', {}, { timeoutMs: 100 })).rejects.toBeInstanceOf(
      DeadlineExceededError,
    );
    await abortedP;
    expect(seen.deadline).toBeGreaterThanOrEqual(before + 100);
    expect(seen.reason).toBeInstanceOf(DeadlineExceededError);
  });

  it('answers DEADLINE_EXCEEDED on the wire when a handler gives up on its signal', async () => {
    h = await startEcho();
    const raw = await RawConnection.open(h.socket);
    const payload = Buffer.from(echoType('SleepRequest').encode({ honorSignal: true }).finish());
    raw.request(1, { service: ECHO, method: 'Sleep', payload, timeoutNano: 30e6 });
    const res = await raw.response();
    raw.close();
    expect(res.streamId).toBe(1);
    expect(res.code).toBe(GrpcCode.DEADLINE_EXCEEDED);
    expect(res.message).toBe('ttrpc: berth.test.ttrpc.Echo/Sleep: deadline exceeded');
  });

  it('rejects with Canceled when the caller aborts, and at once when already aborted', async () => {
    h = await startEcho();
    const ac = new AbortController();
    const p = h.client.call(ECHO, 'Sleep', { ms: 60_000 }, { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(CanceledError);
    await expect(h.client.call(ECHO, 'Echo', {}, { signal: ac.signal })).rejects.toBeInstanceOf(
      CanceledError,
    );
    expect(h.client.inFlight).toBe(0);
  });

  it('refuses a non-positive timeout', async () => {
    h = await startEcho();
    await expect(h.client.call(ECHO, 'Echo', {}, { timeoutMs: 0 })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});

describe('concurrency and size', () => {
  it('runs 100 calls on one connection at once and matches every answer to its call', async () => {
    let waiting = 0;
    let release!: () => void;
    const all = new Promise<void>((resolve) => {
      release = resolve;
    });
    h = await startEcho({
      ...echoHandlers,
      Sleep: async (req: any) => {
        // Every handler waits for all 100 to be running: only concurrent dispatch gets past this.
        if (++waiting === 100) release();
        await all;
        await new Promise((r) => setTimeout(r, (Number(req.tag) * 7) % 13));
        return { text: `done ${req.tag}` };
      },
    });
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => h.client.call(ECHO, 'Sleep', { tag: String(i) })),
    );
    expect(results.map((r) => r.text)).toEqual(Array.from({ length: 100 }, (_, i) => `done ${i}`));
  });

  it('carries a 3 MiB message each way', async () => {
    h = await startEcho();
    const data = Buffer.alloc(3 * MiB);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    const res = await h.client.call(ECHO, 'Echo', { data });
    expect(res.data.length).toBe(data.length);
    expect(res.data.equals(data)).toBe(true);
  });

  it('refuses to send a request over 4 MiB and keeps the connection', async () => {
    h = await startEcho();
    const err = await h.client.call(ECHO, 'Echo', { data: Buffer.alloc(4 * MiB) }).catch((e) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect(err.message).toMatch(/request of \d+ bytes exceeds maximum message size of 4194304/);
    expect(await h.client.call(ECHO, 'Echo', { text: 'still here' })).toMatchObject({ text: 'still here' });
  });

  it('answers RESOURCE_EXHAUSTED when a response would exceed 4 MiB', async () => {
    h = await startEcho();
    const err = await h.client.call(ECHO, 'Echo', { responseBytes: 4 * MiB }).catch((e) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect(err.message).toMatch(/Echo\/Echo: response of \d+ bytes exceeds maximum message size/);
  });

  it('skips an oversized incoming frame, answers RESOURCE_EXHAUSTED on its stream and serves on', async () => {
    h = await startEcho();
    const raw = await RawConnection.open(h.socket);
    raw.write(1, 1, 0, Buffer.alloc(4 * MiB + 1));
    const res = await raw.response();
    expect(res).toMatchObject({
      streamId: 1,
      code: GrpcCode.RESOURCE_EXHAUSTED,
      message: 'message length 4194305 exceed maximum message size of 4194304',
    });
    const payload = Buffer.from(echoType('EchoRequest').encode({ text: 'next' }).finish());
    raw.request(3, { service: ECHO, method: 'Echo', payload });
    const ok = await raw.response();
    raw.close();
    expect(ok.code).toBe(0);
    expect(echoType('EchoResponse').decode(ok.payload)).toMatchObject({ text: 'next' });
  });
});

describe('stream ids', () => {
  it('answers INVALID_ARGUMENT for even or reused stream ids', async () => {
    h = await startEcho();
    const raw = await RawConnection.open(h.socket);
    const payload = Buffer.from(echoType('EchoRequest').encode({}).finish());
    raw.request(2, { service: ECHO, method: 'Echo', payload });
    expect(await raw.response()).toMatchObject({
      streamId: 2,
      code: GrpcCode.INVALID_ARGUMENT,
      message: 'StreamID must be odd for client initiated streams',
    });
    raw.request(5, { service: ECHO, method: 'Echo', payload });
    expect(await raw.response()).toMatchObject({ streamId: 5, code: 0 });
    raw.request(3, { service: ECHO, method: 'Echo', payload });
    expect(await raw.response()).toMatchObject({
      streamId: 3,
      code: GrpcCode.INVALID_ARGUMENT,
      message: 'StreamID cannot be re-used and must increment',
    });
    raw.close();
  });

  it('answers INVALID_ARGUMENT for a request that is not a Request envelope', async () => {
    h = await startEcho();
    const raw = await RawConnection.open(h.socket);
    raw.write(1, 1, 0, Buffer.from([0x0a, 0x10, 0x61]));
    const res = await raw.response();
    raw.close();
    expect(res.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(res.message).toMatch(/^unmarshal request error: ttrpc: malformed request/);
  });
});

describe('connection loss and shutdown', () => {
  it('rejects pending calls with Unavailable("ttrpc: closed") when the server drops the connection', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ttrpc-'));
    const file = path.join(dir, 's.sock');
    const sockets: net.Socket[] = [];
    const handlerSignals: AbortSignal[] = [];
    const server = new TtrpcServer();
    server.register(
      ECHO,
      {
        Sleep: (_req: any, ctx: TtrpcCallContext) => {
          handlerSignals.push(ctx.signal);
          return new Promise(() => {});
        },
      },
      echoService(),
    );
    const listener = net.createServer((s) => {
      sockets.push(s);
      server.serveConnection(s);
    });
    await new Promise<void>((resolve) => listener.listen(file, resolve));
    const closes: (Error | undefined)[] = [];
    const client = await TtrpcClient.connect(file, {
      services: [echoService()],
      onClose: (err) => closes.push(err),
    });
    try {
      const calls = [1, 2, 3].map((i) => client.call(ECHO, 'Sleep', { tag: String(i) }).catch((e) => e));
      while (handlerSignals.length < 3) await new Promise((r) => setTimeout(r, 5));
      sockets[0].destroy();
      for (const err of await Promise.all(calls)) {
        expect(err).toBeInstanceOf(UnavailableError);
        expect(err.message).toBe('ttrpc: closed');
      }
      expect(closes).toHaveLength(1);
      expect(client.closed).toBe(true);
      await expect(client.call(ECHO, 'Sleep', {})).rejects.toThrow(new UnavailableError('ttrpc: closed'));
      for (const s of handlerSignals) {
        if (!s.aborted) await new Promise((r) => s.addEventListener('abort', r));
        expect(s.reason).toBeInstanceOf(CanceledError);
      }
    } finally {
      await client.close();
      await server.close();
      await new Promise((r) => listener.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('close() on the client rejects its pending calls and runs onClose once', async () => {
    const closes: unknown[] = [];
    h = await startEcho(echoHandlers, { onClose: (err) => closes.push(err) });
    const p = h.client.call(ECHO, 'Sleep', { ms: 60_000 }).catch((e) => e);
    await h.client.close();
    expect(await p).toEqual(new UnavailableError('ttrpc: closed'));
    await h.client.close();
    expect(closes).toEqual([undefined]);
  });

  it('graceful close: stops accepting, finishes in-flight calls, refuses new ones, then closes', async () => {
    let started = 0;
    let finish!: () => void;
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const closes: unknown[] = [];
    h = await startEcho(
      {
        ...echoHandlers,
        Sleep: async (req: any) => {
          started++;
          await gate;
          return { text: `done ${req.tag}` };
        },
      },
      { onClose: () => closes.push('closed') },
    );
    const inflight = [1, 2, 3].map((i) => h.client.call(ECHO, 'Sleep', { tag: String(i) }));
    while (started < 3) await new Promise((r) => setTimeout(r, 5));
    const closed = h.server.close();
    expect(fs.existsSync(h.socket)).toBe(false);
    await expect(TtrpcClient.connect(h.socket)).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.client.call(ECHO, 'Echo', {})).rejects.toThrow(
      new UnavailableError('ttrpc: server closed'),
    );
    expect(closes).toEqual([]);
    finish();
    expect((await Promise.all(inflight)).map((r) => r.text)).toEqual(['done 1', 'done 2', 'done 3']);
    await closed;
    while (!h.client.closed) await new Promise((r) => setTimeout(r, 5));
    expect(closes).toEqual(['closed']);
    await expect(h.server.listen(h.socket)).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('close with a timeout cuts connections whose calls do not finish', async () => {
    let aborted: unknown;
    h = await startEcho({
      ...echoHandlers,
      Sleep: (_req: any, ctx: TtrpcCallContext) =>
        new Promise(() => {
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason;
          });
        }),
    });
    const p = h.client.call(ECHO, 'Sleep', {}).catch((e) => e);
    while (h.client.inFlight === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    await h.server.close({ timeoutMs: 50 });
    expect(await p).toEqual(new UnavailableError('ttrpc: closed'));
    expect(aborted).toBeInstanceOf(CanceledError);
  });
});

describe('listening', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ttrpc-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates the socket with mode 0600, or the mode given, under a unix:// address', async () => {
    const a = new TtrpcServer();
    const b = new TtrpcServer();
    try {
      await a.listen(`unix://${dir}/sub/a.sock`);
      await b.listen(path.join(dir, 'b.sock'), { mode: 0o660 });
      expect(fs.statSync(path.join(dir, 'sub', 'a.sock')).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.join(dir, 'b.sock')).mode & 0o777).toBe(0o660);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('replaces a stale socket but refuses a live one or a non-socket file', async () => {
    const file = path.join(dir, 's.sock');
    // A socket file nobody listens on: what a crashed server leaves behind.
    const stale = net.createServer();
    await new Promise<void>((resolve) => stale.listen(file, resolve));
    fs.renameSync(file, `${file}.keep`);
    await new Promise((r) => stale.close(r));
    fs.renameSync(`${file}.keep`, file);
    expect(fs.statSync(file).isSocket()).toBe(true);

    const first = new TtrpcServer();
    first.register(ECHO, echoHandlers, echoService());
    await first.listen(file);
    const second = new TtrpcServer();
    try {
      await expect(second.listen(file)).rejects.toThrow(
        new AlreadyExistsError(`ttrpc socket ${file}: already in use`),
      );
      const c = await TtrpcClient.connect(`unix://${file}`, { services: [echoService()] });
      expect(await c.call(ECHO, 'Echo', { text: 'live' })).toMatchObject({ text: 'live' });
      await c.close();
      const plain = path.join(dir, 'plain');
      fs.writeFileSync(plain, '');
      await expect(second.listen(plain)).rejects.toThrow('exists and is not a socket');
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('refuses a socket path too long for sun_path instead of truncating it', async () => {
    const long = path.join(dir, 'x'.repeat(120));
    const server = new TtrpcServer();
    await expect(server.listen(long)).rejects.toThrow(`ttrpc socket ${long}: path longer than 107 bytes`);
    await expect(TtrpcClient.connect(`unix://${long}`)).rejects.toBeInstanceOf(InvalidArgumentError);
    await server.close();
  });

  it('serves a connection handed in directly, and a client over a given socket', async () => {
    const server = new TtrpcServer();
    server.register(ECHO, echoHandlers, echoService());
    const file = path.join(dir, 'p.sock');
    const listener = net.createServer((s) => server.serveConnection(s));
    await new Promise<void>((resolve) => listener.listen(file, resolve));
    const socket = net.connect(file);
    const client = new TtrpcClient(socket, { services: [echoService()] });
    try {
      expect(await client.call(ECHO, 'Echo', { text: 'direct' })).toMatchObject({ text: 'direct' });
    } finally {
      await client.close();
      await server.close();
      await new Promise((r) => listener.close(r));
    }
    // A client over a socket that is already gone closes at once rather than hanging.
    const dead = new TtrpcClient(socket);
    await dead.close();
    expect(dead.closed).toBe(true);
    await expect(dead.call(ECHO, 'Echo', {})).rejects.toBeInstanceOf(UnavailableError);
  });

  it('reports connect failures as typed errors', async () => {
    await expect(TtrpcClient.connect(path.join(dir, 'none.sock'))).rejects.toBeInstanceOf(NotFoundError);
    await expect(TtrpcClient.connect('tcp://127.0.0.1:1')).rejects.toBeInstanceOf(InvalidArgumentError);
    const file = path.join(dir, 'plain');
    fs.writeFileSync(file, '');
    await expect(TtrpcClient.connect(file)).rejects.toBeInstanceOf(UnavailableError);
  });
});
