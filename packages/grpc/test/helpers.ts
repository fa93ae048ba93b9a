import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-grpc-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A method whose messages are raw bytes, for tests that look at the wire. */
const id = (b: Buffer) => b;
export const bytesMethod = (path: string, requestStream = false, responseStream = false) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
});

export const frame = (payload: Buffer, compressed = 0): Buffer => {
  const h = Buffer.alloc(5);
  h[0] = compressed;
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
};

export interface RawResult {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  /** grpc-status from the trailers (or from the headers of a trailers-only answer). */
  code: number | undefined;
  message: string | undefined;
  body: Buffer;
  rstCode: number;
}

/**
 * One call over node:http2's client on a unix socket, headers as given (`:authority`
 * included), body sent then half-closed; what came back, status from trailers.
 */
export function rawCall(
  socket: string,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer,
  opts: { keepOpen?: boolean; onStream?: (s: http2.ClientHttp2Stream) => void } = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const client = http2.connect('http://localhost', { createConnection: () => connect(socket) });
    client.on('error', reject);
    const req = client.request({
      ':method': 'POST',
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    req.on('response', (h) => {
      resHeaders = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('error', () => {});
    req.on('close', () => {
      const st = trailers['grpc-status'] ?? resHeaders['grpc-status'];
      const msg = trailers['grpc-message'] ?? resHeaders['grpc-message'];
      client.close();
      resolve({
        headers: resHeaders,
        trailers,
        code: st === undefined ? undefined : Number(st),
        message: msg === undefined ? undefined : decodeURIComponent(String(msg)),
        body: Buffer.concat(parts),
        rstCode: req.rstCode ?? 0,
      });
    });
    if (opts.keepOpen) req.write(body);
    else req.end(body);
    opts.onStream?.(req);
  });
}

/** Messages in a gRPC body (uncompressed). */
export function messages(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 5 <= body.length) {
    const len = body.readUInt32BE(off + 1);
    out.push(body.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  return out;
}

export const fdCount = (): number => readdirSync('/proc/self/fd').length;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until check() is true or timeoutMs passes; returns the last value of check(). */
export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await sleep(20);
  }
  return check();
}
