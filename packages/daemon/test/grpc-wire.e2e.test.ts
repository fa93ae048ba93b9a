/**
 * berthd's gRPC server as clients that are not ours reach it: crictl (gRPC-Go dialing a
 * bare unix path sends the socket path as :authority), a raw HTTP/2 client setting
 * :authority freely, and the standard health service.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GrpcCode, grpcService } from '@berth/api';
import { type Daemon, startBerthd } from '@berth/testkit';

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
  return new Promise((resolve, reject) => {
    const client = http2.connect('http://localhost', { createConnection: () => connect(daemon.address) });
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

test('crictl version reaches berthd and is told the CRI service is not there (never PROTOCOL_ERROR)', async () => {
  if (!existsSync(CRICTL)) {
    console.warn(`skipped: ${CRICTL} is absent (the shared tools are not beside the repository)`);
    return;
  }
  const err = await run(CRICTL, [
    '--runtime-endpoint',
    `unix://${daemon.address}`,
    '--timeout',
    '10s',
    'version',
  ]).then(
    () => undefined,
    (e: { stderr: string }) => e,
  );
  expect(err?.stderr).toContain('code = Unimplemented desc = unknown service runtime.v1.RuntimeService');
  expect(err?.stderr).not.toContain('PROTOCOL_ERROR');
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
