/**
 * berthd's gRPC server as clients that are not ours reach it: crictl (gRPC-Go dialing a
 * bare unix path sends the socket path as :authority), a raw HTTP/2 client setting
 * :authority freely, and the standard health service.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GrpcCode, grpcService } from '@berth/api';
import { containerdInstalled, type Daemon, startBerthd, startContainerd } from '@berth/testkit';

const run = promisify(execFile);
/** CI clones the repository with the shared tools beside it (../shared). */
const CRICTL = join(__dirname, '..', '..', '..', '..', 'shared', 'tools', 'crictl');

let daemon: Daemon;
beforeAll(async () => {
  daemon = await startBerthd();
});
afterAll(() => daemon?.dispose());

function call(
  path: string,
  authority: string,
  body: Buffer,
): Promise<{ code: number; message: string; body: Buffer }> {
  return callAt(daemon.address, path, body, authority);
}

/** One gRPC call on a raw HTTP/2 connection to socket, with the body given byte for byte. */
function callAt(
  socket: string,
  path: string,
  body: Buffer,
  authority = 'localhost',
): Promise<{ code: number; message: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const client = http2.connect('http://localhost', { createConnection: () => connect(socket) });
    client.on('error', reject);
    const req = client.request({
      ':method': 'POST',
      ':path': path,
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let status: http2.IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    req.on('response', (h) => {
      status = h;
    });
    req.on('trailers', (t) => {
      status = t;
    });
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('close', () => {
      client.close();
      if (status['grpc-status'] === undefined)
        reject(new Error(`no gRPC status (RST_STREAM ${req.rstCode})`));
      else
        resolve({
          code: Number(status['grpc-status']),
          message: decodeURIComponent(String(status['grpc-message'] ?? '')),
          body: Buffer.concat(parts),
        });
    });
    req.end(body);
  });
}

const EMPTY = Buffer.alloc(5);

test('crictl version reaches berthd through its socket-path :authority and gets the CRI version (never PROTOCOL_ERROR)', async () => {
  if (!existsSync(CRICTL)) {
    console.warn(`skipped: ${CRICTL} is absent (the shared tools are not beside the repository)`);
    return;
  }
  const out = await run(CRICTL, [
    '--runtime-endpoint',
    `unix://${daemon.address}`,
    '--timeout',
    '10s',
    'version',
  ]);
  expect(out.stdout).toContain('RuntimeName:  berth');
  expect(out.stdout).toContain('RuntimeApiVersion:  v1');
});

test.each(['/run/berth/berth.sock', '%2Frun%2Fberth%2Fberth.sock'])(
  'Version answers a request whose :authority is %s',
  async (authority) => {
    const res = await call('/containerd.services.version.v1.Version/Version', authority, EMPTY);
    expect(res.code).toBe(GrpcCode.OK);
    const version = grpcService('containerd.services.version.v1.Version').Version!.responseDeserialize(
      res.body.subarray(5),
    );
    expect(version.version).toMatch(/^v?\d+\.\d+/);
  },
);

test('grpc.health.v1.Health/Check says SERVING for the server once it is up; NOT_FOUND for a name it does not know', async () => {
  const res = await call('/grpc.health.v1.Health/Check', daemon.address, EMPTY);
  expect(res.code).toBe(GrpcCode.OK);
  expect(res.body).toEqual(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]));
  const name = Buffer.from('nope');
  const req = Buffer.concat([Buffer.from([0, 0, 0, 0, name.length + 2, 0x0a, name.length]), name]);
  expect(await call('/grpc.health.v1.Health/Check', 'localhost', req)).toMatchObject({
    code: GrpcCode.NOT_FOUND,
    message: 'unknown service',
  });
});

/** berthd's open file descriptors and resident memory (kB), from /proc. */
function usage(pid: number): { fds: number; rssKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    fds: readdirSync(`/proc/${pid}/fd`).length,
    rssKb: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]),
  };
}

/** Opens a connection, sends bytes, resolves once berthd closed it (rejects after 10 s). */
function garbageConnection(bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(daemon.address);
    let got = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`berthd kept a garbage connection open for 10 s (it sent ${got} bytes)`));
    }, 10_000);
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.on('error', () => {});
    s.on('connect', () => s.write(bytes));
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

test('1000 connections that break HTTP/2 are each closed, and leave no descriptor or memory behind', async () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  const kinds = [
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    // DATA on stream 0, which nghttp2 answers with GOAWAY(PROTOCOL_ERROR).
    Buffer.concat([preface, settings, Buffer.from([0, 0, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3])]),
    // HEADERS whose padding is longer than the frame: the frame layer's GOAWAY.
    Buffer.concat([preface, settings, Buffer.from([0, 0, 2, 1, 0x0c, 0, 0, 0, 1, 200, 0x82])]),
  ];
  const round = async () => {
    for (let batch = 0; batch < 5; batch++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => garbageConnection(kinds[i % kinds.length]!)));
    }
  };
  // 500 first, so what berthd allocates once (buffers, JIT, the heap V8 grows to) is in the
  // baseline; then 1000 more are measured.
  await round();
  const before = usage(daemon.pid);
  await round();
  await round();
  let after = usage(daemon.pid);
  for (let i = 0; i < 50 && after.fds > before.fds; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = usage(daemon.pid);
  }
  expect(after.fds).toBeLessThanOrEqual(before.fds);
  // RSS is a coarse measure: V8 lets its heap grow by tens of MB before a major collection
  // (measured over 24000 such connections: 110 -> 279 -> 210 MB while the fds stayed flat).
  // So this bound catches a leak of 64 kB or more per connection; the fd count catches any socket.
  expect(after.rssKb - before.rssKb).toBeLessThan(64 * 1024);
  // And berthd still answers.
  expect((await call('/grpc.health.v1.Health/Check', 'localhost', EMPTY)).code).toBe(GrpcCode.OK);
}, 120_000);

describe('malformed request bodies get the answers containerd (grpc-go) gives', () => {
  let containerd: Daemon | undefined;
  beforeAll(async () => {
    if (containerdInstalled()) containerd = await startContainerd();
  });
  afterAll(() => containerd?.dispose());

  const INFO = '/containerd.services.content.v1.Content/Info';
  const digest = Buffer.from(`sha256:${'a'.repeat(64)}`);
  const infoRequest = Buffer.concat([Buffer.from([0x0a, digest.length]), digest]);
  const framed = (flag: number, declared: number, payload: Buffer) => {
    const prefix = Buffer.alloc(5);
    prefix[0] = flag;
    prefix.writeUInt32BE(declared, 1);
    return Buffer.concat([prefix, payload]);
  };

  test.each([
    ['a field cut short', framed(0, 20, infoRequest.subarray(0, 20)), GrpcCode.INTERNAL],
    ['a 2 GiB length prefix', framed(0, 0x80000000, Buffer.alloc(0)), GrpcCode.RESOURCE_EXHAUSTED],
    [
      'the compressed flag without grpc-encoding',
      framed(1, infoRequest.length, infoRequest),
      GrpcCode.INTERNAL,
    ],
  ])('%s', async (_, body, code) => {
    const viaBerthd = await callAt(daemon.address, INFO, body);
    expect(viaBerthd.code).toBe(code);
    if (code === GrpcCode.RESOURCE_EXHAUSTED) {
      expect(viaBerthd.message).toBe('grpc: received message larger than max (2147483648 vs. 16777216)');
    }
    if (!containerd) return;
    const viaContainerd = await callAt(containerd.address, INFO, body);
    expect(viaBerthd.code).toBe(viaContainerd.code);
    if (code === GrpcCode.RESOURCE_EXHAUSTED) expect(viaBerthd.message).toBe(viaContainerd.message);
  });
});
