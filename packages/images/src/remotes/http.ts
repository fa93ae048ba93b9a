import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { CanceledError, DeadlineExceededError, ResourceExhaustedError, UnavailableError } from '@berth/api';

export interface TlsSettings {
  /** Extra CA certificates (PEM), added to the system roots. */
  ca?: Buffer[];
  /** Do not verify the server's certificate (hosts.toml `skip_verify`). */
  skipVerify?: boolean;
  /** Client certificate and key (PEM). */
  cert?: Buffer[];
  key?: Buffer[];
}

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string | string[]>;
  /** A buffer, or a function giving a fresh body stream (so the request can be retried). */
  body?: Buffer | (() => AsyncIterable<Buffer>);
  /** Milliseconds to wait for the response headers. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Follow redirects for GET and HEAD (default true), dropping Authorization on a host change. */
  followRedirects?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  /** The URL that answered (after redirects). */
  url: URL;
}

/** Keeps one keep-alive agent per TLS setting, as Go's transport per client. */
export class HttpTransport {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;

  constructor(tls: TlsSettings = {}, maxSockets = 16) {
    this.http = new HttpAgent({ keepAlive: true, maxSockets });
    const ca = tls.ca?.length ? [...rootCertificates, ...tls.ca.map((c) => c.toString())] : undefined;
    this.https = new HttpsAgent({
      keepAlive: true,
      maxSockets,
      ...(ca ? { ca } : {}),
      ...(tls.skipVerify ? { rejectUnauthorized: false } : {}),
      ...(tls.cert?.length ? { cert: tls.cert } : {}),
      ...(tls.key?.length ? { key: tls.key } : {}),
    });
  }

  async request(req: HttpRequest): Promise<HttpResponse> {
    let url = req.url;
    let headers = { ...(req.headers ?? {}) };
    let method = req.method;
    for (let redirects = 0; ; redirects++) {
      const res = await this.once({ ...req, url, headers, method });
      const follow = req.followRedirects !== false && (method === 'GET' || method === 'HEAD');
      if (!follow || ![301, 302, 303, 307, 308].includes(res.status) || !res.headers.location) return res;
      res.body.resume();
      if (redirects >= 5) throw new UnavailableError(`${req.method} ${req.url}: too many redirects`);
      const next = new URL(res.headers.location, url);
      if (next.host !== url.host) {
        const { authorization: _a, Authorization: _b, ...rest } = headers;
        headers = rest;
      }
      url = next;
      if (res.status === 303) method = 'GET';
    }
  }

  private once(req: HttpRequest): Promise<HttpResponse> {
    const { url } = req;
    const isHttps = url.protocol === 'https:';
    const send = isHttps ? httpsRequest : httpRequest;
    return new Promise<HttpResponse>((resolve, reject) => {
      if (req.signal?.aborted) {
        reject(new CanceledError(`${req.method} ${url}: canceled`, { cause: req.signal.reason }));
        return;
      }
      const r = send(url, {
        method: req.method,
        headers: req.headers,
        agent: isHttps ? this.https : this.http,
      });
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () =>
        r.destroy(new CanceledError(`${req.method} ${url}: canceled`, { cause: req.signal?.reason }));
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
      };
      req.signal?.addEventListener('abort', onAbort, { once: true });
      if (req.timeoutMs) {
        timer = setTimeout(
          () =>
            r.destroy(
              new DeadlineExceededError(`${req.method} ${url}: no response within ${req.timeoutMs} ms`),
            ),
          req.timeoutMs,
        );
      }
      r.on('response', (res) => {
        cleanup();
        // A body still being read when the caller aborts is torn down too.
        if (req.signal) {
          const abortBody = () => res.destroy(new CanceledError(`${req.method} ${url}: canceled`));
          req.signal.addEventListener('abort', abortBody, { once: true });
          res.once('close', () => req.signal?.removeEventListener('abort', abortBody));
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
      });
      r.on('error', (e) => {
        cleanup();
        reject(e);
      });
      const body = req.body;
      if (body === undefined) r.end();
      else if (Buffer.isBuffer(body)) r.end(body);
      else {
        (async () => {
          for await (const chunk of body()) {
            if (!r.write(chunk)) await new Promise<void>((res) => r.once('drain', res));
          }
          r.end();
        })().catch((e) => r.destroy(e));
      }
    });
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

/** Thrown when a body stops delivering data for longer than the progress timeout. */
export class StallError extends DeadlineExceededError {}

/**
 * Yields a body's chunks, failing with a StallError when no data arrives for `ms`
 * (the clock stops while the consumer holds a chunk, so a slow disk is not a stall).
 */
export async function* readWithProgressTimeout(
  body: Readable,
  ms: number,
  what: string,
): AsyncGenerator<Buffer> {
  if (!(ms > 0)) {
    yield* body as AsyncIterable<Buffer>;
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => body.destroy(new StallError(`${what}: no data received for ${ms} ms`)), ms);
  };
  const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      arm();
      const r = await it.next();
      clearTimeout(timer);
      if (r.done) return;
      yield r.value;
    }
  } finally {
    clearTimeout(timer);
    if (!body.destroyed) body.destroy();
  }
}

/** Reads a whole body, failing past `limit` bytes (so an oversized answer is not buffered). */
export async function readBody(body: Readable, limit: number, what: string, progressMs = 0): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of readWithProgressTimeout(body, progressMs, what)) {
    n += c.length;
    if (n > limit) {
      body.destroy();
      throw new TooLargeError(`${what}: more than ${limit} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

export class TooLargeError extends ResourceExhaustedError {}

/** Retry-After in milliseconds (seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
