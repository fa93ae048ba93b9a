/**
 * The streaming server's pure parts and error paths, with a runtime of the test's own (the
 * real one is driven by streaming.e2e.test.ts): tokens, SPDY framing through a client built
 * here on zlib, remote-command and port-forward protocol answers, unknown/expired/used tokens,
 * bad subprotocols, WebSocket channels.
 */
import { request } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';
import { isInvalidArgument, type wire } from '@berth/api';
import WebSocket from 'ws';
import { exitStatusJson, negotiate, type RemoteIo, ResizeDecoder } from '../src/streaming/protocol';
import type { StreamingRuntime } from '../src/streaming/runtime';
import { StreamServer } from '../src/streaming/server';
import { decodeHeaderBlock, encodeHeaderBlock, type Headers } from '../src/streaming/spdy';
import { TokenCache } from '../src/streaming/tokens';

const DICT: Buffer = require('spdy-transport').protocol.spdy.dictionary[3];

describe('TokenCache', () => {
  it('hands a value out once, and not after it expired', () => {
    let now = 1000;
    const c = new TokenCache<string>(60_000, 10, () => now);
    const a = c.insert('a');
    const b = c.insert('b');
    expect(a).toMatch(/^[A-Za-z0-9_-]{11}$/);
    expect(a).not.toBe(b);
    expect(c.consume(a)).toBe('a');
    expect(c.consume(a)).toBeUndefined();
    now += 60_000;
    expect(c.consume(b)).toBeUndefined();
    expect(c.consume('nope')).toBeUndefined();
  });

  it('is bounded: full of live tokens, an insert is ResourceExhausted; expired ones make room', () => {
    let now = 0;
    const c = new TokenCache<number>(1000, 2, () => now);
    c.insert(1);
    c.insert(2);
    expect(() => c.insert(3)).toThrow(/maximum number of in-flight/);
    now = 1000;
    c.insert(3);
    expect(c.size).toBe(1);
  });
});

describe('protocol pieces', () => {
  it('negotiates as httpstream.Handshake: the first of the client list the server speaks', () => {
    expect(
      negotiate(['v5', 'v4.channel.k8s.io', 'channel.k8s.io'], ['v4.channel.k8s.io', 'channel.k8s.io']),
    ).toBe('v4.channel.k8s.io');
    expect(negotiate([], ['a'])).toBe('');
    expect(negotiate(['x'], ['a'])).toBeUndefined();
  });

  it('writes the v4 exit status as metav1.Status', () => {
    expect(JSON.parse(exitStatusJson(0))).toEqual({ metadata: {}, status: 'Success' });
    const s = JSON.parse(exitStatusJson(3, ['sh', '-c', 'exit 3']));
    expect(s).toMatchObject({
      status: 'Failure',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '3' }] },
    });
  });

  it('splits resize messages however they are cut', () => {
    const sizes: unknown[] = [];
    const d = new ResizeDecoder((s) => sizes.push(s));
    d.push('{"Width":80,"Hei');
    d.push('ght":24}\n{"Width":100,"Height":50}\n{bad}\n');
    expect(sizes).toEqual([
      { width: 80, height: 24 },
      { width: 100, height: 50 },
    ]);
  });

  it('round-trips SPDY/3 header blocks (names lower-cased, values NUL-joined)', () => {
    const h = decodeHeaderBlock(encodeHeaderBlock({ StreamType: ['stdout'], port: ['80', '81'] }));
    expect(h).toEqual({ streamtype: ['stdout'], port: ['80', '81'] });
    expect(() => decodeHeaderBlock(Buffer.from([0, 0, 0, 1, 0, 0, 0, 9]))).toThrow(/truncated/);
  });
});

/** A SPDY/3.1 client as spdystream frames it, small enough to read here. */
class SpdyClient {
  private readonly deflate = zlib.createDeflate({ dictionary: DICT });
  private readonly inflate = zlib.createInflate({ dictionary: DICT });
  private buf = Buffer.alloc(0);
  private nextId = 1;
  readonly data = new Map<number, Buffer>();
  readonly fin = new Set<number>();
  readonly replies = new Set<number>();
  readonly resets = new Set<number>();
  goaway = false;
  private waiters: (() => void)[] = [];
  private chain = Promise.resolve();

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 8) {
        const len = this.buf.readUInt32BE(4) & 0xffffff;
        if (this.buf.length < 8 + len) break;
        const f = this.buf.subarray(0, 8 + len);
        this.buf = this.buf.subarray(8 + len);
        this.chain = this.chain.then(() => this.onFrame(f));
      }
    });
  }

  private async onFrame(f: Buffer) {
    const flags = f[4];
    if ((f[0] & 0x80) === 0) {
      const id = f.readUInt32BE(0);
      this.data.set(id, Buffer.concat([this.data.get(id) ?? Buffer.alloc(0), f.subarray(8)]));
      if (flags & 1) this.fin.add(id);
    } else {
      const type = f.readUInt16BE(2);
      if (type === 2) {
        await flush(this.inflate, f.subarray(12));
        this.replies.add(f.readUInt32BE(8));
      } else if (type === 3) this.resets.add(f.readUInt32BE(8));
      else if (type === 7) this.goaway = true;
    }
    for (const w of this.waiters.splice(0)) w();
  }

  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((r) => this.waiters.push(r));
  }

  async open(headers: Headers, fin = false): Promise<number> {
    const id = this.nextId;
    this.nextId += 2;
    const block = await flush(this.deflate, encodeHeaderBlock(headers));
    const p = Buffer.alloc(10);
    p.writeUInt32BE(id, 0);
    const h = Buffer.alloc(8);
    h.writeUInt16BE(0x8003, 0);
    h.writeUInt16BE(1, 2);
    h.writeUInt32BE(((fin ? 1 : 0) << 24) | (p.length + block.length), 4);
    this.socket.write(Buffer.concat([h, p, block]));
    return id;
  }

  send(id: number, data: Buffer, fin = false) {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(id, 0);
    h.writeUInt32BE(((fin ? 1 : 0) << 24) | data.length, 4);
    this.socket.write(Buffer.concat([h, data]));
  }

  text(id: number) {
    return (this.data.get(id) ?? Buffer.alloc(0)).toString();
  }
}

function flush(z: zlib.Deflate | zlib.Inflate, input: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const on = (c: Buffer) => out.push(c);
    z.on('data', on);
    z.write(input);
    z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      z.off('data', on);
      resolve(Buffer.concat(out));
    });
  });
}

/** Upgrades to SPDY; resolves with the status line and headers, and the socket. */
function upgrade(
  url: string,
  protocols: string[],
  kind = 'SPDY/3.1',
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  socket?: Socket;
}> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string | string[]> = { Connection: 'Upgrade', Upgrade: kind };
    if (protocols.length) headers['X-Stream-Protocol-Version'] = protocols;
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers });
    req.on('upgrade', (res, socket) =>
      resolve({ status: res.statusCode!, headers: res.headers, body: '', socket }),
    );
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A runtime that echoes: exec writes its command and what stdin gave, exits with `exit <n>` in it. */
class FakeRuntime implements StreamingRuntime {
  resizes: unknown[] = [];
  async exec(req: wire.cri.ExecRequest, io: RemoteIo): Promise<number> {
    io.onResize((s) => this.resizes.push(s));
    if (req.cmd[0] === 'fail') throw new Error('no such process');
    io.stdout?.write(`out:${req.cmd.join(' ')}\n`);
    io.stderr?.write('err\n');
    if (io.stdin) for await (const c of io.stdin) io.stdout?.write(c as Buffer);
    const m = /exit (\d+)/.exec(req.cmd.join(' '));
    return m ? Number(m[1]) : 0;
  }
  async attach(_req: wire.cri.AttachRequest, io: RemoteIo): Promise<void> {
    io.stdout?.write('attached\n');
  }
  async portForward(_pod: string, port: number, stream: Duplex): Promise<void> {
    if (port === 1) throw new Error('connection refused');
    // An echo service that says which port it is.
    stream.write(`port ${port}:`);
    // Not for-await: ending the iteration would destroy (reset) the stream.
    stream.on('data', (c: Buffer) => stream.write(c));
    await new Promise((r) => stream.once('end', r));
  }
}

describe('StreamServer', () => {
  let server: StreamServer;
  const runtime = new FakeRuntime();
  const exec = (over: Partial<wire.cri.ExecRequest> = {}) =>
    server.exec({
      containerId: 'c1',
      cmd: ['echo', 'hi'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
      ...over,
    }).url;

  beforeAll(async () => {
    server = new StreamServer(runtime, { address: '127.0.0.1', port: 0, tokenTtlMs: 500 });
    await server.start();
  });
  afterAll(() => server.close());

  it('validates requests as the kubelet does', () => {
    const bad = (f: () => unknown, msg: RegExp) => {
      try {
        f();
        throw new Error('accepted');
      } catch (e) {
        expect(isInvalidArgument(e)).toBe(true);
        expect((e as Error).message).toMatch(msg);
      }
    };
    bad(() => exec({ cmd: [] }), /exec command must not be empty/);
    bad(() => exec({ tty: true, stderr: true }), /tty and stderr cannot both be true/);
    bad(() => exec({ stdout: false, stderr: false }), /one of stdin, stdout, or stderr must be set/);
    bad(() => exec({ containerId: '' }), /missing required container_id/);
    bad(() => server.portForward({ podSandboxId: '', port: [] }), /missing required pod_sandbox_id/);
    expect(exec()).toMatch(new RegExp(`^${server.url}/exec/[A-Za-z0-9_-]+$`));
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('answers 404 to an unknown, a used, an expired or a mismatched token', async () => {
    expect((await upgrade(`${server.url}/exec/nope`, ['v4.channel.k8s.io'])).status).toBe(404);
    const url = exec();
    expect((await upgrade(url.replace('/exec/', '/attach/'), ['v4.channel.k8s.io'])).status).toBe(404);
    // The mismatched try used the token up.
    expect((await upgrade(url, ['v4.channel.k8s.io'])).status).toBe(404);
    const late = exec();
    await new Promise((r) => setTimeout(r, 600));
    expect((await upgrade(late, ['v4.channel.k8s.io'])).status).toBe(404);
    const plain = exec();
    const res = await upgrade(plain, [], 'h2c');
    expect(res.status).toBe(400);
  });

  it('refuses a subprotocol it does not speak with 403 and the ones it does', async () => {
    const res = await upgrade(exec(), ['v9.channel.k8s.io']);
    expect(res.status).toBe(403);
    expect(res.headers['x-accepted-stream-protocol-versions']).toContain('v4.channel.k8s.io');
    expect(res.body).toMatch(/unable to negotiate protocol: client supports \[v9.channel.k8s.io\]/);
  });

  it('runs an exec over SPDY v4: stdout, stderr, stdin, resize, exit status', async () => {
    const res = await upgrade(exec({ cmd: ['sh', 'exit 3'], stdin: true }), [
      'v4.channel.k8s.io',
      'v3.channel.k8s.io',
    ]);
    expect(res.status).toBe(101);
    expect(res.headers['x-stream-protocol-version']).toBe('v4.channel.k8s.io');
    const c = new SpdyClient(res.socket!);
    const err = await c.open({ streamtype: ['error'] });
    const stdin = await c.open({ streamtype: ['stdin'] });
    const out = await c.open({ streamtype: ['stdout'] });
    const errs = await c.open({ streamtype: ['stderr'] });
    c.send(stdin, Buffer.from('typed'), true);
    await c.until(() => c.goaway);
    expect([...c.replies].sort()).toEqual([err, stdin, out, errs].sort());
    expect(c.text(out)).toBe('out:sh exit 3\ntyped');
    expect(c.text(errs)).toBe('err\n');
    expect(JSON.parse(c.text(err))).toMatchObject({
      reason: 'NonZeroExitCode',
      details: { causes: [{ message: '3' }] },
    });
    expect(c.fin.has(out) && c.fin.has(err)).toBe(true);
  });

  it('passes terminal sizes on with tty (v3 and later), and reports an error on the error stream', async () => {
    const res = await upgrade(exec({ tty: true, stderr: false }), ['v3.channel.k8s.io']);
    const c = new SpdyClient(res.socket!);
    const err = await c.open({ streamtype: ['error'] });
    const out = await c.open({ streamtype: ['stdout'] });
    const resize = await c.open({ streamtype: ['resize'] });
    c.send(resize, Buffer.from('{"Width":120,"Height":40}\n'));
    await c.until(() => c.goaway);
    expect(c.text(out)).toBe('out:echo hi\n');
    expect(c.text(err)).toBe(''); // v3: nothing on success
    expect(runtime.resizes).toContainEqual({ width: 120, height: 40 });

    const res2 = await upgrade(exec({ cmd: ['fail'] }), ['v4.channel.k8s.io']);
    const c2 = new SpdyClient(res2.socket!);
    const err2 = await c2.open({ streamtype: ['error'] });
    await c2.open({ streamtype: ['stdout'] });
    await c2.open({ streamtype: ['stderr'] });
    await c2.until(() => c2.goaway);
    expect(JSON.parse(c2.text(err2))).toMatchObject({ status: 'Failure', message: 'no such process' });
  });

  it('forwards several ports at once over SPDY, and reports a port that cannot be reached', async () => {
    const url = server.portForward({ podSandboxId: 'p1', port: [] }).url;
    const res = await upgrade(url, ['portforward.k8s.io']);
    expect(res.headers['x-stream-protocol-version']).toBe('portforward.k8s.io');
    const c = new SpdyClient(res.socket!);
    const e1 = await c.open({ streamtype: ['error'], port: ['80'], requestid: ['0'] }, true);
    const d1 = await c.open({ streamtype: ['data'], port: ['80'], requestid: ['0'] });
    const e2 = await c.open({ streamtype: ['error'], port: ['8080'], requestid: ['1'] }, true);
    const d2 = await c.open({ streamtype: ['data'], port: ['8080'], requestid: ['1'] });
    const e3 = await c.open({ streamtype: ['error'], port: ['1'], requestid: ['2'] }, true);
    const d3 = await c.open({ streamtype: ['data'], port: ['1'], requestid: ['2'] });
    c.send(d1, Buffer.from('a'));
    c.send(d2, Buffer.from('b'), true);
    c.send(d1, Buffer.from('c'), true);
    await c.until(() => c.fin.has(d1) && c.fin.has(d2) && c.fin.has(e3));
    expect(c.text(d1)).toBe('port 80:ac');
    expect(c.text(d2)).toBe('port 8080:b');
    expect(c.text(e1)).toBe('');
    expect(c.text(e2)).toBe('');
    expect(c.text(e3)).toBe('error forwarding port 1 to pod p1: connection refused');
    expect(c.fin.has(d3) || c.resets.has(d3)).toBe(true);
    c.socket.destroy();
  });

  it('runs an exec over WebSocket v5 with channel framing and closes stdin on channel 255', async () => {
    const url = exec({ cmd: ['sh', 'exit 2'], stdin: true }).replace('http:', 'ws:');
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    const got = new Map<number, string>();
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => {
        expect(ws.protocol).toBe('v5.channel.k8s.io');
        ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('in')]));
        ws.send(Buffer.from([255, 0]));
      });
      ws.on('message', (m: Buffer) => got.set(m[0], (got.get(m[0]) ?? '') + m.subarray(1).toString()));
      ws.on('close', () => resolve());
      ws.on('error', reject);
    });
    expect(got.get(1)).toBe('out:sh exit 2\nin');
    expect(got.get(2)).toBe('err\n');
    expect(JSON.parse(got.get(3)!)).toMatchObject({ reason: 'NonZeroExitCode' });
  });

  it('refuses a WebSocket subprotocol it does not speak', async () => {
    const ws = new WebSocket(exec().replace('http:', 'ws:'), ['base64.channel.k8s.io']);
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
      ws.on('error', () => {});
    });
    expect(status).toBe(400);
  });

  it('forwards over WebSocket: a data and an error channel per port, each opened with the port', async () => {
    const url = `${server.portForward({ podSandboxId: 'p1', port: [] }).url.replace('http:', 'ws:')}?ports=81`;
    const ws = new WebSocket(url, ['v4.channel.k8s.io']);
    const got = new Map<number, Buffer>();
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (m: Buffer) => {
        got.set(m[0], Buffer.concat([got.get(m[0]) ?? Buffer.alloc(0), m.subarray(1)]));
        if (m[0] === 0 && got.get(0)!.length === 2) ws.send(Buffer.from([0, 0x78]));
        if (got.get(0)?.toString('latin1').endsWith('port 81:x')) resolve();
      });
      ws.on('error', reject);
    });
    expect(got.get(0)!.readUInt16LE(0)).toBe(81);
    expect(got.get(1)!.readUInt16LE(0)).toBe(81);
    ws.close();
  });
});
