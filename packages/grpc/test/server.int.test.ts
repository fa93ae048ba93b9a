import { once } from 'node:events';
import * as http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import {
  CanceledError,
  type Context,
  DeadlineExceededError,
  GrpcCode,
  grpcService,
  InvalidArgumentError,
  NotFoundError,
} from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import {
  bidi,
  clientStream,
  encodeLiterals,
  HealthService,
  Server,
  type ServerStreamCall,
  serverStream,
  unary,
} from '../src';
import { bytesMethod, fdCount, frame, messages, rawCall, tempDir, waitFor } from './helpers';

const VERSION = '/containerd.services.version.v1.Version/Version';
const versionDef = grpcService('containerd.services.version.v1.Version');
const testDef = {
  Echo: bytesMethod('/berth.test.T/Echo'),
  Namespace: bytesMethod('/berth.test.T/Namespace'),
  Wait: bytesMethod('/berth.test.T/Wait'),
  Fail: bytesMethod('/berth.test.T/Fail'),
  Many: bytesMethod('/berth.test.T/Many', false, true),
  Sum: bytesMethod('/berth.test.T/Sum', true, false),
  Chat: bytesMethod('/berth.test.T/Chat', true, true),
  Meta: bytesMethod('/berth.test.T/Meta', false, true),
};

const { dir, cleanup } = tempDir();
const sock = join(dir, 'grpc.sock');
const server = new Server({ maxRecvMessageSize: 1024 });
const health = new HealthService();
/** What the last Wait handler's signal was aborted with. */
let waitAborted: ((reason: unknown) => void) | undefined;
const unexpected: unknown[] = [];
let failWith: unknown;

beforeAll(async () => {
  server.addService(versionDef, { Version: unary(() => ({ version: 'v1.2.3', revision: 'abc' })) });
  health.register(server);
  server.addService(testDef, {
    Echo: unary((_ctx, req: Buffer) => req),
    Namespace: unary((ctx: Context) => Buffer.from(`${ctx.namespace}|${ctx.lease}`)),
    Wait: unary(
      (ctx: Context) =>
        new Promise<Buffer>((_resolve, reject) => {
          ctx.signal!.addEventListener('abort', () => {
            waitAborted?.(ctx.signal!.reason);
            reject(ctx.signal!.reason);
          });
        }),
    ),
    Fail: unary(
      () => {
        throw failWith;
      },
      { onUnexpectedError: (_m, err) => unexpected.push(err) },
    ),
    Many: serverStream(async (_ctx, req: Buffer, call: ServerStreamCall<Buffer, Buffer>) => {
      const n = req.readUInt32BE(0);
      for (let i = 0; i < n; i++) {
        const msg = Buffer.alloc(64 << 10, i & 0xff);
        if (!call.write(msg)) await once(call, 'drain');
      }
    }),
    Sum: clientStream(async (_ctx, call: ServerStreamCall<Buffer, never>) => {
      let total = 0;
      for await (const m of call) total += (m as Buffer).length;
      const out = Buffer.alloc(4);
      out.writeUInt32BE(total);
      return out;
    }),
    Chat: bidi(async (_ctx, call: ServerStreamCall<Buffer, Buffer>) => {
      for await (const m of call) call.write(Buffer.concat([Buffer.from('re:'), m as Buffer]));
    }),
    Meta: serverStream(async (_ctx, _req, call: ServerStreamCall<Buffer, Buffer>) => {
      const [bin] = call.metadata.get('x-token-bin');
      call.write(bin as Buffer);
    }),
  });
  await server.listen(sock);
});

afterAll(async () => {
  await server.shutdown(100);
  cleanup();
});

const grpcHeaders = (path: string, extra: http2.OutgoingHttpHeaders = {}) => ({ ':path': path, ...extra });

describe(':authority', () => {
  test("Node's own HTTP/2 server resets a stream whose :authority holds a socket path (the problem)", async () => {
    const plain = http2.createServer();
    plain.on('stream', (s) => s.respond({ ':status': 200 }, { endStream: true }));
    const path = join(dir, 'plain.sock');
    await new Promise<void>((r) => plain.listen(path, r));
    const res = await rawCall(
      path,
      grpcHeaders(VERSION, { ':authority': '/run/berth/berth.sock' }),
      frame(Buffer.alloc(0)),
    );
    expect(res.rstCode).toBe(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    await new Promise((r) => plain.close(r));
  });

  test.each([
    ['a socket path', '/run/berth/berth.sock'],
    ['a %-encoded socket path', '%2Frun%2Fberth%2Fberth.sock'],
    ['localhost', 'localhost'],
  ])('a request whose :authority is %s gets its answer', async (_what, authority) => {
    const res = await rawCall(
      sock,
      grpcHeaders(VERSION, { ':authority': authority }),
      frame(Buffer.alloc(0)),
    );
    expect(res.rstCode).toBe(0);
    expect(res.code).toBe(GrpcCode.OK);
    const [msg] = messages(res.body);
    expect(versionDef.Version!.responseDeserialize(msg!)).toEqual({ version: 'v1.2.3', revision: 'abc' });
  });

  test('an unknown service or method answers UNIMPLEMENTED in grpc-go words, whatever the authority', async () => {
    const svc = await rawCall(
      sock,
      grpcHeaders('/runtime.v1.RuntimeService/Version', { ':authority': '/run/berth/berth.sock' }),
      frame(Buffer.alloc(0)),
    );
    expect({ code: svc.code, message: svc.message }).toEqual({
      code: GrpcCode.UNIMPLEMENTED,
      message: 'unknown service runtime.v1.RuntimeService',
    });
    const method = await rawCall(
      sock,
      grpcHeaders('/containerd.services.version.v1.Version/Nope', { ':authority': '%2Frun' }),
      frame(Buffer.alloc(0)),
    );
    expect({ code: method.code, message: method.message }).toEqual({
      code: GrpcCode.UNIMPLEMENTED,
      message: 'unknown method Nope for service containerd.services.version.v1.Version',
    });
  });

  test.each([
    ['a socket path first (frame layer)', '/run/berth/berth.sock', 'filtered'],
    ['localhost first (native)', 'localhost', 'native'],
  ] as const)(
    'many requests on one connection, %s, all get through (HPACK-indexed headers)',
    async (_what, first, path) => {
      const before = { ...server.connections };
      const client = http2.connect('http://localhost', { createConnection: () => connect(sock) });
      // A connection's path is chosen by its first request; a client keeps its authority.
      const authority = (i: number) => (path === 'native' ? 'localhost' : i % 2 ? 'localhost' : first);
      const one = (i: number) =>
        new Promise<string>((resolve, reject) => {
          const req = client.request({
            ':method': 'POST',
            ':path': testDef.Echo.path,
            ':authority': authority(i),
            'content-type': 'application/grpc',
            'containerd-namespace': `ns-${i}`,
            'x-big': 'v'.repeat(3000 + i),
          });
          const parts: Buffer[] = [];
          req.on('data', (d) => parts.push(d));
          req.on('error', reject);
          req.on('close', () =>
            resolve(messages(Buffer.concat(parts))[0]?.toString() ?? `rst ${req.rstCode}`),
          );
          req.end(frame(Buffer.from(`m${i}`)));
        });
      const out: string[] = [];
      for (let i = 0; i < 30; i++) out.push(await one(i));
      out.push(...(await Promise.all(Array.from({ length: 30 }, (_, i) => one(100 + i)))));
      client.close();
      expect(out).toEqual([
        ...Array.from({ length: 30 }, (_, i) => `m${i}`),
        ...Array.from({ length: 30 }, (_, i) => `m${100 + i}`),
      ]);
      expect(server.connections[path]).toBe(before[path] + 1);
    },
  );
});

describe('the start of a connection (native handoff or frame layer)', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const h2frame = (type: number, flags: number, id: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(id, 5);
    return Buffer.concat([h, payload]);
  };
  const SETTINGS_ACK = h2frame(4, 1, 0, Buffer.alloc(0));
  const echoHeaders = (authority: string) =>
    h2frame(
      1,
      0x4,
      1,
      encodeLiterals([
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', testDef.Echo.path],
        [':authority', authority],
        ['content-type', 'application/grpc'],
      ]),
    );

  /**
   * A client on a bare socket that sends its request before it has read anything, then
   * ACKs every SETTINGS frame the server sends (the injected one and nghttp2's) as it
   * reads them; the frames the server sent, until it ends the stream or closes.
   */
  function eagerClient(authority: string): Promise<{ type: number; flags: number; payload: Buffer }[]> {
    return new Promise((resolve, reject) => {
      const s = connect(sock);
      const got: { type: number; flags: number; payload: Buffer }[] = [];
      let buf = Buffer.alloc(0);
      const done = () => {
        s.destroy();
        resolve(got);
      };
      s.on('error', reject);
      s.on('close', () => resolve(got));
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const len = buf.readUIntBE(0, 3);
          const f = { type: buf[3]!, flags: buf[4]!, payload: buf.subarray(9, 9 + len) };
          buf = buf.subarray(9 + len);
          got.push(f);
          if (f.type === 4 && !(f.flags & 1)) s.write(SETTINGS_ACK);
          if (f.type === 7 || (f.type === 1 && f.flags & 1)) return done();
        }
      });
      s.write(
        Buffer.concat([
          preface,
          h2frame(4, 0, 0, Buffer.alloc(0)),
          echoHeaders(authority),
          h2frame(0, 1, 1, frame(Buffer.from(`via ${authority}`))),
        ]),
      );
      setTimeout(() => reject(new Error('no answer in 10 s')), 10_000).unref();
    });
  }

  test.each([
    ['localhost', 'native'],
    ['/run/berth/berth.sock', 'filtered'],
  ] as const)(
    'a client that sends its request before reading SETTINGS, authority %s: answered, no GOAWAY (the injected SETTINGS ACK never reaches nghttp2)',
    async (authority, path) => {
      const before = { ...server.connections };
      const frames = await eagerClient(authority);
      const data = Buffer.concat(frames.filter((f) => f.type === 0).map((f) => f.payload));
      const settings = frames.filter((f) => f.type === 4 && !(f.flags & 1));
      expect({
        goaway: frames.some((f) => f.type === 7),
        reply: messages(data)[0]?.toString(),
        trailers: frames.some((f) => f.type === 1 && f.flags & 1),
        // The injected SETTINGS and nghttp2's carry the same settings.
        settings: settings.map((f) => f.payload.toString('hex')),
      }).toEqual({
        goaway: false,
        reply: `via ${authority}`,
        trailers: true,
        settings: [
          http2.getPackedSettings({ initialWindowSize: 16 << 20 }).toString('hex'),
          http2.getPackedSettings({ initialWindowSize: 16 << 20 }).toString('hex'),
        ],
      });
      expect(server.connections[path]).toBe(before[path] + 1);
    },
  );

  test('a client that asks nothing within 1 s goes through the frame layer, and is served', async () => {
    const before = server.connections.filtered;
    const client = http2.connect('http://localhost', { createConnection: () => connect(sock) });
    await new Promise((r) => setTimeout(r, 1300));
    const reply = await new Promise<string>((resolve, reject) => {
      const req = client.request({
        ':method': 'POST',
        ':path': testDef.Echo.path,
        'content-type': 'application/grpc',
      });
      const parts: Buffer[] = [];
      req.on('data', (d) => parts.push(d));
      req.on('error', reject);
      req.on('close', () => resolve(messages(Buffer.concat(parts))[0]?.toString() ?? `rst ${req.rstCode}`));
      req.end(frame(Buffer.from('late')));
    });
    client.close();
    expect({ reply, filtered: server.connections.filtered - before }).toEqual({ reply: 'late', filtered: 1 });
  });

  test('a native connection idle past the liveness probe (a PING) stays open and serves calls', async () => {
    const client = http2.connect('http://localhost', { createConnection: () => connect(sock) });
    const pinged = new Promise((resolve) => client.once('ping', resolve));
    const echo = (m: string) =>
      new Promise<string>((resolve, reject) => {
        const req = client.request({
          ':method': 'POST',
          ':path': testDef.Echo.path,
          'content-type': 'application/grpc',
        });
        const parts: Buffer[] = [];
        req.on('data', (d) => parts.push(d));
        req.on('error', reject);
        req.on('close', () => resolve(messages(Buffer.concat(parts))[0]?.toString() ?? `rst ${req.rstCode}`));
        req.end(frame(Buffer.from(m)));
      });
    expect(await echo('before')).toBe('before');
    await pinged;
    await new Promise((r) => setTimeout(r, 1500));
    const after = await echo('after');
    const closed = client.closed || client.destroyed;
    client.close();
    expect({ after, closed }).toEqual({ after: 'after', closed: false });
  }, 15_000);

  test('a grpc-js client (waits for SETTINGS, authority localhost) is served natively', async () => {
    const before = server.connections.native;
    const client = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure());
    const echo = (m: string) =>
      new Promise<string>((resolve, reject) =>
        client.makeUnaryRequest(
          testDef.Echo.path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from(m),
          (err, res) => (err ? reject(err) : resolve(res!.toString())),
        ),
      );
    const out = await Promise.all(Array.from({ length: 50 }, (_, i) => echo(`g${i}`)));
    client.close();
    expect(out).toEqual(Array.from({ length: 50 }, (_, i) => `g${i}`));
    expect(server.connections.native).toBe(before + 1);
  });
});

describe('metadata and context', () => {
  test('repeated containerd-namespace and containerd-lease headers: the handler sees the first', async () => {
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Namespace.path, {
        'containerd-namespace': ['ns-a', 'ns-b'],
        'containerd-lease': ['lease-1', 'lease-2'],
      }),
      frame(Buffer.alloc(0)),
    );
    expect(res.code).toBe(GrpcCode.OK);
    expect(messages(res.body)[0]!.toString()).toBe('ns-a|lease-1');
  });

  test('-bin metadata reaches a handler as bytes', async () => {
    const token = Buffer.from([0, 1, 2, 250, 255]);
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Meta.path, { 'x-token-bin': token.toString('base64') }),
      frame(Buffer.alloc(0)),
    );
    expect(messages(res.body)[0]).toEqual(token);
  });
});

describe('error paths', () => {
  test('a deadline that passes answers DEADLINE_EXCEEDED and aborts the handler signal', async () => {
    const aborted = new Promise((resolve) => {
      waitAborted = resolve;
    });
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Wait.path, { 'grpc-timeout': '50m' }),
      frame(Buffer.alloc(0)),
    );
    expect({ code: res.code, message: res.message }).toEqual({
      code: GrpcCode.DEADLINE_EXCEEDED,
      message: 'context deadline exceeded',
    });
    expect(await aborted).toBeInstanceOf(DeadlineExceededError);
  });

  test('a malformed grpc-timeout is INTERNAL', async () => {
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Echo.path, { 'grpc-timeout': '5x' }),
      frame(Buffer.alloc(0)),
    );
    expect({ code: res.code, message: res.message }).toEqual({
      code: GrpcCode.INTERNAL,
      message: 'transport: malformed grpc-timeout: 5x',
    });
  });

  test('client cancellation (RST_STREAM) aborts the handler signal', async () => {
    const aborted = new Promise((resolve) => {
      waitAborted = resolve;
    });
    const res = rawCall(sock, grpcHeaders(testDef.Wait.path), frame(Buffer.alloc(0)), {
      onStream: (s) => setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 50),
    });
    expect(await aborted).toBeInstanceOf(CanceledError);
    expect((await res).rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  test('1500 calls cancelled while open on one frame-layer connection do not end it (nghttp2 would past 1000)', async () => {
    const client = http2.connect('http://localhost', { createConnection: () => connect(sock) });
    const goaway = new Promise((resolve) => client.once('goaway', resolve));
    for (let i = 0; i < 1500; i++) {
      const req = client.request({
        ':method': 'POST',
        ':path': testDef.Wait.path,
        ':authority': '/run/berth/berth.sock',
        'content-type': 'application/grpc',
      });
      req.on('error', () => {});
      req.end(frame(Buffer.alloc(0)));
      await new Promise((r) => setImmediate(r));
      req.close(http2.constants.NGHTTP2_CANCEL);
      await once(req, 'close');
    }
    const last = client.request({
      ':method': 'POST',
      ':path': testDef.Echo.path,
      'content-type': 'application/grpc',
    });
    const parts: Buffer[] = [];
    last.on('data', (d: Buffer) => parts.push(d));
    last.end(frame(Buffer.from('still here')));
    const outcome = await Promise.race([
      once(last, 'close').then(() => 'closed'),
      goaway.then(() => 'goaway'),
    ]);
    client.close();
    expect({ outcome, reply: messages(Buffer.concat(parts))[0]?.toString() }).toEqual({
      outcome: 'closed',
      reply: 'still here',
    });
  });

  test('a message over the maximum is RESOURCE_EXHAUSTED naming both sizes', async () => {
    const res = await rawCall(sock, grpcHeaders(testDef.Echo.path), frame(Buffer.alloc(2000)));
    expect({ code: res.code, message: res.message }).toEqual({
      code: GrpcCode.RESOURCE_EXHAUSTED,
      message: 'grpc: received message larger than max (2000 vs. 1024)',
    });
  });

  test('a compressed message over the maximum once decompressed is RESOURCE_EXHAUSTED', async () => {
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Echo.path, { 'grpc-encoding': 'gzip' }),
      frame(gzipSync(Buffer.alloc(100_000)), 1),
    );
    expect(res.code).toBe(GrpcCode.RESOURCE_EXHAUSTED);
    expect(res.message).toMatch(
      /^grpc: received message after decompression larger than max \(\d+\+? vs\. 1024\)$/,
    );
  });

  test('the compressed flag without grpc-encoding is INTERNAL', async () => {
    const res = await rawCall(sock, grpcHeaders(testDef.Echo.path), frame(Buffer.from('x'), 1));
    expect({ code: res.code, message: res.message }).toEqual({
      code: GrpcCode.INTERNAL,
      message: 'grpc: compressed flag set with identity or empty encoding',
    });
  });

  test('an unknown grpc-encoding is UNIMPLEMENTED, as grpc-go', async () => {
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Echo.path, { 'grpc-encoding': 'snappy' }),
      frame(Buffer.from('x')),
    );
    expect({ code: res.code, message: res.message }).toEqual({
      code: GrpcCode.UNIMPLEMENTED,
      message: 'grpc: Decompressor is not installed for grpc-encoding "snappy"',
    });
  });

  test.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
  ])('a %s-compressed request is decompressed', async (encoding, compress) => {
    const res = await rawCall(
      sock,
      grpcHeaders(testDef.Echo.path, { 'grpc-encoding': encoding }),
      frame(compress(Buffer.from('hello compressed')), 1),
    );
    expect(res.code).toBe(GrpcCode.OK);
    expect(messages(res.body)[0]!.toString()).toBe('hello compressed');
  });

  test('thrown errors leave through toGrpcStatus; grpc-message is percent-encoded', async () => {
    failWith = new InvalidArgumentError('bad "é" 100%');
    const res = await rawCall(sock, grpcHeaders(testDef.Fail.path), frame(Buffer.alloc(0)));
    expect(res.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(res.headers['grpc-message']).toBe('bad "%C3%A9" 100%25');
    expect(res.message).toBe('bad "é" 100%');

    failWith = new NotFoundError('thing x: not found');
    const nf = await rawCall(sock, grpcHeaders(testDef.Fail.path), frame(Buffer.alloc(0)));
    expect({ code: nf.code, message: nf.message }).toEqual({
      code: GrpcCode.NOT_FOUND,
      message: 'thing x: not found',
    });
    expect(unexpected).toEqual([]);

    failWith = new Error('a bug');
    const bug = await rawCall(sock, grpcHeaders(testDef.Fail.path), frame(Buffer.alloc(0)));
    expect({ code: bug.code, message: bug.message }).toEqual({ code: GrpcCode.UNKNOWN, message: 'a bug' });
    expect(unexpected).toEqual([failWith]);
  });

  test('a unary call without its request message is INTERNAL', async () => {
    const res = await rawCall(sock, grpcHeaders(testDef.Echo.path), Buffer.alloc(0));
    expect({ code: res.code, message: res.message }).toEqual({
      code: GrpcCode.INTERNAL,
      message: 'grpc: no request message',
    });
  });
});

describe('streams through grpc-js as a client', () => {
  const Client = grpc.makeGenericClientConstructor(testDef, 'T');
  let client: grpc.Client & Record<string, any>;
  beforeAll(() => {
    client = new Client(`unix://${sock}`, grpc.credentials.createInsecure()) as any;
  });
  afterAll(() => client.close());

  test('a server stream of 300 messages of 64 KiB arrives whole (backpressure on the server side)', async () => {
    const req = Buffer.alloc(4);
    req.writeUInt32BE(300);
    const s = client.Many(req) as grpc.ClientReadableStream<Buffer>;
    let n = 0;
    let bytes = 0;
    for await (const m of s) {
      expect((m as Buffer)[0]).toBe(n & 0xff);
      n++;
      bytes += (m as Buffer).length;
    }
    expect({ n, bytes }).toEqual({ n: 300, bytes: 300 * (64 << 10) });
  });

  test('a client stream and a bidi stream', async () => {
    const sum = await new Promise<Buffer>((resolve, reject) => {
      const s = client.Sum((err: Error | null, res: Buffer) => (err ? reject(err) : resolve(res)));
      for (let i = 0; i < 10; i++) s.write(Buffer.alloc(100));
      s.end();
    });
    expect(sum.readUInt32BE(0)).toBe(1000);

    const chat = client.Chat() as grpc.ClientDuplexStream<Buffer, Buffer>;
    const got: string[] = [];
    chat.on('data', (m: Buffer) => got.push(m.toString()));
    chat.write(Buffer.from('a'));
    chat.write(Buffer.from('b'));
    chat.end();
    await once(chat, 'end');
    expect(got).toEqual(['re:a', 're:b']);
  });
});

describe('grpc.health.v1.Health (raw HTTP/2 client)', () => {
  const CHECK = '/grpc.health.v1.Health/Check';
  const req = (service: string) =>
    frame(Buffer.concat([Buffer.from([0x0a, service.length]), Buffer.from(service)]));

  test('Check: NOT_SERVING, then SERVING; NOT_FOUND for an unknown service', async () => {
    health.setStatus('', 'NOT_SERVING');
    const before = await rawCall(
      sock,
      grpcHeaders(CHECK, { ':authority': '/run/x.sock' }),
      frame(Buffer.alloc(0)),
    );
    expect(messages(before.body)[0]).toEqual(Buffer.from([0x08, 0x02]));
    health.setStatus('', 'SERVING');
    const after = await rawCall(sock, grpcHeaders(CHECK), frame(Buffer.alloc(0)));
    expect(after.code).toBe(GrpcCode.OK);
    expect(messages(after.body)[0]).toEqual(Buffer.from([0x08, 0x01]));
    const unknown = await rawCall(sock, grpcHeaders(CHECK), req('nope'));
    expect({ code: unknown.code, message: unknown.message }).toEqual({
      code: GrpcCode.NOT_FOUND,
      message: 'unknown service',
    });
  });

  test('Watch sends the status, then each change', async () => {
    health.setStatus('', 'SERVING');
    const got: Buffer[] = [];
    const done = rawCall(sock, grpcHeaders('/grpc.health.v1.Health/Watch'), frame(Buffer.alloc(0)), {
      onStream: (s) => {
        let buf = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          const ms = messages(buf);
          if (ms.length > got.length) {
            got.push(...ms.slice(got.length));
            if (got.length === 1) health.setStatus('', 'NOT_SERVING');
            if (got.length === 2) s.close(http2.constants.NGHTTP2_CANCEL);
          }
        });
      },
    });
    await done;
    // SERVING is an empty-looking 08 01, NOT_SERVING 08 02.
    expect(got).toEqual([Buffer.from([0x08, 0x01]), Buffer.from([0x08, 0x02])]);
  });
});

describe('connections that break HTTP/2', () => {
  /** Opens n connections that each send bytes, and resolves when the server has closed them all. */
  async function garbage(n: number, bytes: Buffer): Promise<Buffer[]> {
    const received: Buffer[] = [];
    await Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const s: Socket = connect(sock);
            const parts: Buffer[] = [];
            s.on('data', (d) => parts.push(d));
            s.on('error', () => {});
            s.on('connect', () => s.write(bytes));
            s.on('close', () => {
              received[i] = Buffer.concat(parts);
              resolve();
            });
            setTimeout(() => reject(new Error(`connection ${i} still open after 10 s`)), 10_000).unref();
          }),
      ),
    );
    return received;
  }

  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  const nativeBlock = encodeLiterals([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', testDef.Echo.path],
    [':authority', 'localhost'],
    ['content-type', 'application/grpc'],
  ]);
  /** A Version call (HEADERS then an empty message), authority localhost. */
  const nativeRequest = Buffer.concat([
    Buffer.from([0, 0, nativeBlock.length, 1, 0x4, 0, 0, 0, 1]),
    nativeBlock,
    Buffer.from([0, 0, 5, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
  ]);
  /** The GOAWAY error code in what the server sent, if it sent one. */
  const goawayCode = (b: Buffer): number | undefined => {
    let off = 0;
    while (off + 9 <= b.length) {
      const len = b.readUIntBE(off, 3);
      if (b[off + 3] === 7) return b.readUInt32BE(off + 13);
      off += 9 + len;
    }
    return undefined;
  };

  test.each([
    ['garbage instead of the preface', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), undefined],
    [
      'a HEADERS frame whose padding is longer than the frame',
      Buffer.concat([preface, settings, Buffer.from([0, 0, 2, 1, 0x0c, 0, 0, 0, 1, 200, 0x82])]),
      http2.constants.NGHTTP2_PROTOCOL_ERROR,
    ],
    [
      'DATA on stream 0 (nghttp2 finds it)',
      Buffer.concat([preface, settings, Buffer.from([0, 0, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3])]),
      http2.constants.NGHTTP2_PROTOCOL_ERROR,
    ],
    [
      'DATA on stream 0 after a first request served natively',
      Buffer.concat([
        preface,
        settings,
        Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0]),
        nativeRequest,
        Buffer.from([0, 0, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3]),
      ]),
      http2.constants.NGHTTP2_PROTOCOL_ERROR,
    ],
  ])(
    '200 connections sending %s are closed; the fd count returns to its baseline',
    async (_what, bytes, code) => {
      const baseline = fdCount();
      const received = await garbage(200, bytes);
      if (code !== undefined) expect(received.map(goawayCode)).toEqual(received.map(() => code));
      expect(await waitFor(() => fdCount() <= baseline)).toBe(true);
    },
  );
});
