import { createHash } from 'node:crypto';
import { type IncomingHttpHeaders, STATUS_CODES } from 'node:http';
import {
  type BerthError,
  CanceledError,
  type Descriptor,
  type Digest,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
  UnknownError,
  validateDigest,
} from '@berth/api';
import { detectManifestType, MAX_MANIFEST_SIZE } from '../image/manifest';
import { isIndexType, isManifestType, MANIFEST_ACCEPT } from '../image/media-types';
import { formatReference, type ImageReference, parseReference, referenceObject } from '../reference';
import { Authorizer } from './auth';
import type { CredentialsFunc } from './credentials';
import { configureHosts, type HostCapability, type RegistryHost, type RegistryHosts } from './hosts';
import {
  type HttpResponse,
  header,
  parseRetryAfter,
  readBody,
  readWithProgressTimeout,
  TooLargeError,
} from './http';

export interface RegistryClientOptions {
  /** Endpoints per domain; default `configureHosts({ hostsDir, plainHttp })`. */
  hosts?: RegistryHosts;
  /** containerd's config_path for hosts.toml files (used when `hosts` is not given). */
  hostsDir?: string;
  /** Plain http to every host (used when `hosts` is not given). */
  plainHttp?: boolean;
  credentials?: CredentialsFunc;
  authorizer?: Authorizer;
  /** Retries of one request after 5xx, 429 or a network error (default 5). */
  retries?: number;
  /** First backoff delay, doubled each retry up to `maxRetryDelayMs` (default 250 ms, 10 s). */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Longest Retry-After honoured (default 60 s); longer asks fail the request. */
  maxRetryAfterMs?: number;
  /** Time to wait for response headers (default 60 s). */
  requestTimeoutMs?: number;
  /** A body that delivers nothing for this long fails as stalled (default 30 s). */
  progressTimeoutMs?: number;
  /** Largest manifest accepted (default 4 MiB, as containerd). */
  maxManifestSize?: number;
  userAgent?: string;
}

export interface Resolved {
  /** The normalised reference that was resolved. */
  name: string;
  desc: Descriptor;
}

export interface BlobStream {
  /** Where the body starts in the blob: the requested offset, or 0 when the server ignored Range. */
  start: number;
  body: AsyncIterable<Buffer>;
  host: string;
}

/** The registry's own error text (`{"errors":[{"code","message"}]}`), or the start of the body. */
function registryErrorText(body: string): string {
  try {
    const doc = JSON.parse(body) as { errors?: Array<{ code?: string; message?: string; detail?: unknown }> };
    if (Array.isArray(doc.errors) && doc.errors.length) {
      return doc.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
    }
  } catch {
    // not JSON
  }
  return body.trim().slice(0, 200);
}

function statusError(what: string, status: number, text: string): BerthError {
  const msg = `${what}: ${status} ${STATUS_CODES[status] ?? ''}${text ? `: ${text}` : ''}`;
  if (status === 401 || status === 403) return new PermissionDeniedError(msg);
  if (status === 404) return new NotFoundError(msg);
  if (status === 400 || status === 405) return new InvalidArgumentError(msg);
  if (status === 409) return new FailedPreconditionError(msg);
  if (status === 416) return new FailedPreconditionError(msg);
  if (status === 429 || status >= 500) return new UnavailableError(msg);
  return new UnknownError(msg);
}

async function errorFor(what: string, res: HttpResponse): Promise<BerthError> {
  let text = '';
  try {
    text = registryErrorText((await readBody(res.body, 64 << 10, what, 5000)).toString('utf8'));
  } catch {
    // the status says enough
  }
  return statusError(what, res.status, text);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CanceledError('canceled', { cause: signal.reason }));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new CanceledError('canceled', { cause: signal?.reason }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const isCanceled = (e: unknown) => (e as BerthError)?.code === 'ERR_CANCELED';

function contentType(headers: IncomingHttpHeaders): string {
  return (header(headers, 'content-type') ?? '').split(';')[0]!.trim();
}

interface SendRequest {
  method: string;
  /** Path below the host's API root (`/<repo>/manifests/<tag>`), or an absolute URL. */
  path?: string;
  url?: URL;
  headers?: Record<string, string>;
  body?: Buffer | (() => AsyncIterable<Buffer>);
  scopes: string[];
  signal?: AbortSignal;
  /** Add `ns=<domain>` when talking to a mirror (containerd does). */
  namespace?: string;
}

/**
 * An OCI distribution client: resolves references, fetches manifests and blobs (with
 * ranges), pushes blobs and manifests. Retries 5xx/429/network failures with backoff,
 * honours Retry-After, answers auth challenges through the Authorizer, fails stalled bodies.
 */
export class RegistryClient {
  readonly hosts: RegistryHosts;
  readonly authorizer: Authorizer;
  readonly retries: number;
  readonly progressTimeoutMs: number;
  readonly maxManifestSize: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly requestTimeoutMs: number;
  private readonly userAgent: string;

  constructor(opts: RegistryClientOptions = {}) {
    this.hosts = opts.hosts ?? configureHosts({ hostsDir: opts.hostsDir, plainHttp: opts.plainHttp });
    this.userAgent = opts.userAgent ?? 'berth/0.1';
    this.authorizer =
      opts.authorizer ?? new Authorizer({ credentials: opts.credentials, userAgent: this.userAgent });
    this.retries = opts.retries ?? 5;
    this.retryDelayMs = opts.retryDelayMs ?? 250;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 10_000;
    this.maxRetryAfterMs = opts.maxRetryAfterMs ?? 60_000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
    this.progressTimeoutMs = opts.progressTimeoutMs ?? 30_000;
    this.maxManifestSize = opts.maxManifestSize ?? MAX_MANIFEST_SIZE;
  }

  /** The remote repository a reference names (`host/path`, tag and digest ignored). */
  async repository(ref: ImageReference | string): Promise<RemoteRepository> {
    const r = typeof ref === 'string' ? parseReference(ref) : ref;
    const hosts = await this.hosts(r.domain);
    return new RemoteRepository(this, r, hosts);
  }

  /** Resolves a reference to the descriptor of its manifest or index. */
  async resolve(ref: ImageReference | string, signal?: AbortSignal): Promise<Resolved> {
    const repo = await this.repository(ref);
    return repo.resolve(signal);
  }

  backoff(attempt: number): number {
    const d = Math.min(this.maxRetryDelayMs, this.retryDelayMs * 2 ** attempt);
    return d / 2 + Math.random() * (d / 2);
  }

  /** One request with auth and retries; the caller owns the response body. */
  async send(host: RegistryHost, req: SendRequest): Promise<HttpResponse> {
    let url: URL;
    if (req.url) url = req.url;
    else {
      url = new URL(`${host.scheme}://${host.host}${host.path}${req.path ?? ''}`);
      if (req.namespace && req.namespace !== host.host) url.searchParams.set('ns', req.namespace);
    }
    let authTries = 0;
    let attempt = 0;
    const what = `${req.method} ${url.origin}${url.pathname}`;
    for (;;) {
      const headers: Record<string, string | string[]> = { 'user-agent': this.userAgent };
      for (const [k, v] of Object.entries(host.header)) headers[k.toLowerCase()] = v;
      Object.assign(headers, req.headers);
      const authz = await this.authorizer.authorize(host, req.scopes, req.signal);
      if (authz) headers.authorization = authz;
      let res: HttpResponse;
      try {
        res = await host.transport.request({
          method: req.method,
          url,
          headers,
          body: req.body,
          timeoutMs: this.requestTimeoutMs,
          signal: req.signal,
        });
      } catch (e) {
        if (isCanceled(e) || req.signal?.aborted) throw e;
        if (attempt < this.retries) {
          await sleep(this.backoff(attempt++), req.signal);
          continue;
        }
        throw new UnavailableError(`${what}: ${(e as Error).message}`, { cause: e });
      }
      if (res.status === 401) {
        if (authTries++ < 2 && this.authorizer.handleUnauthorized(host, res.headers)) {
          res.body.resume();
          continue;
        }
        const err = await errorFor(what, res);
        throw new PermissionDeniedError(`${err.message}${authz ? '' : ' (no credentials)'}`);
      }
      if ((res.status === 429 || (res.status >= 500 && res.status !== 501)) && attempt < this.retries) {
        const after = parseRetryAfter(res.headers['retry-after']);
        if (after !== undefined && after > this.maxRetryAfterMs) return res;
        res.body.resume();
        await sleep(after ?? this.backoff(attempt), req.signal);
        attempt++;
        continue;
      }
      return res;
    }
  }

  async error(what: string, res: HttpResponse): Promise<BerthError> {
    return errorFor(what, res);
  }
}

/** One repository on a registry, reached through its configured hosts (mirrors first). */
export class RemoteRepository {
  constructor(
    readonly client: RegistryClient,
    readonly ref: ImageReference,
    readonly hosts: RegistryHost[],
  ) {}

  get name(): string {
    return formatReference(this.ref);
  }

  hostsWith(...caps: HostCapability[]): RegistryHost[] {
    return this.hosts.filter((h) => caps.every((c) => h.capabilities.includes(c)));
  }

  scope(actions: string): string {
    return `repository:${this.ref.path}:${actions}`;
  }

  /**
   * Resolves the reference's tag or digest to a manifest/index descriptor: HEAD with the
   * manifest Accept list, GET when the registry gives no digest, size or a usable type.
   */
  async resolve(signal?: AbortSignal): Promise<Resolved> {
    const object = referenceObject(this.ref);
    const byDigest = this.ref.digest !== undefined;
    const paths = byDigest ? [`manifests/${object}`, `blobs/${object}`] : [`manifests/${object}`];
    const hosts = byDigest ? this.hostsWith('pull') : this.hostsWith('pull', 'resolve');
    if (hosts.length === 0) throw new NotFoundError(`${this.name}: no hosts configured to resolve`);
    const limit = this.client.maxManifestSize;
    let firstErr: unknown;
    for (const p of paths) {
      for (const host of hosts) {
        const what = `resolving ${this.name} on ${host.host}`;
        try {
          const req = {
            path: `/${this.ref.path}/${p}`,
            headers: { accept: MANIFEST_ACCEPT },
            scopes: [this.scope('pull')],
            signal,
            namespace: this.ref.domain,
          };
          const head = await this.client.send(host, { ...req, method: 'HEAD' });
          head.body.resume();
          if (head.status === 404) continue;
          if (head.status > 299) {
            firstErr ??= statusError(what, head.status, '');
            continue;
          }
          let digest: Digest | undefined = this.ref.digest;
          const lenHeader = header(head.headers, 'content-length');
          let size = lenHeader !== undefined ? Number(lenHeader) : -1;
          let mediaType = contentType(head.headers);
          if (!digest) {
            const h = header(head.headers, 'docker-content-digest');
            if (h && size >= 0) {
              try {
                digest = validateDigest(h);
              } catch (e) {
                throw new UnavailableError(
                  `${what}: Docker-Content-Digest ${JSON.stringify(h)}: ${(e as Error).message}`,
                );
              }
            }
          }
          if (size > limit) throw this.tooLarge(size, limit);
          if (!digest || size < 0 || !(isManifestType(mediaType) || isIndexType(mediaType))) {
            const get = await this.client.send(host, { ...req, method: 'GET' });
            if (get.status > 299) {
              firstErr ??= await this.client.error(what, get);
              continue;
            }
            const declared = Number(header(get.headers, 'content-length') ?? -1);
            if (declared > limit) {
              get.body.destroy();
              throw this.tooLarge(declared, limit);
            }
            let body: Buffer;
            try {
              body = await readBody(get.body, limit, what, this.client.progressTimeoutMs);
            } catch (e) {
              if (e instanceof TooLargeError) throw this.tooLarge(undefined, limit);
              throw e;
            }
            mediaType = detectManifestType(contentType(get.headers), body);
            const actual = `sha256:${createHash('sha256').update(body).digest('hex')}`;
            if (digest && digest !== actual && byDigest) {
              throw new FailedPreconditionError(
                `${what}: registry sent content with digest ${actual}, want ${digest}`,
              );
            }
            digest ??= actual;
            size = body.length;
          }
          return { name: this.name, desc: { mediaType, digest, size } };
        } catch (e) {
          if (isCanceled(e) || e instanceof ResourceExhaustedError) throw e;
          firstErr ??= e;
        }
      }
    }
    if (firstErr) throw firstErr;
    throw new NotFoundError(`${this.name}: not found`);
  }

  private tooLarge(size: number | undefined, limit: number): ResourceExhaustedError {
    return new ResourceExhaustedError(
      `${this.name}: rejecting ${size !== undefined ? `${size} byte ` : ''}manifest: larger than the ${limit} byte limit`,
    );
  }

  /**
   * Opens a blob (or manifest) body from `offset`. `start` tells where the body really starts:
   * a server that ignores Range answers from 0. Tries each pull host in turn.
   */
  async openBlob(desc: Descriptor, offset = 0, signal?: AbortSignal): Promise<BlobStream> {
    const hosts = this.hostsWith('pull');
    if (hosts.length === 0) throw new NotFoundError(`${this.name}: no hosts configured to pull from`);
    const manifest = isManifestType(desc.mediaType) || isIndexType(desc.mediaType);
    const paths = manifest ? ['manifests', 'blobs'] : ['blobs'];
    let firstErr: unknown;
    for (const host of hosts) {
      for (const kind of paths) {
        const what = `fetching ${desc.digest} from ${host.host}/${this.ref.path}`;
        const headers: Record<string, string> = {
          accept: manifest ? `${desc.mediaType}, */*` : `${desc.mediaType}, */*`,
        };
        if (offset > 0) headers.range = `bytes=${offset}-`;
        let res: HttpResponse;
        try {
          res = await this.client.send(host, {
            method: 'GET',
            path: `/${this.ref.path}/${kind}/${desc.digest}`,
            headers,
            scopes: [this.scope('pull')],
            signal,
            namespace: this.ref.domain,
          });
        } catch (e) {
          if (isCanceled(e)) throw e;
          firstErr ??= e;
          continue;
        }
        if (res.status === 404) {
          res.body.resume();
          firstErr ??= new NotFoundError(`${what}: not found`);
          continue;
        }
        if (res.status === 416 && offset > 0) {
          // Our offset is past what the server has: start over.
          res.body.resume();
          return this.openBlob(desc, 0, signal);
        }
        if (res.status !== 200 && res.status !== 206) {
          firstErr ??= await this.client.error(what, res);
          continue;
        }
        let start = 0;
        if (res.status === 206) {
          const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res.headers, 'content-range') ?? '');
          if (!m || Number(m[1]) !== offset) {
            res.body.destroy();
            throw new UnavailableError(
              `${what}: bad Content-Range ${JSON.stringify(header(res.headers, 'content-range'))} for offset ${offset}`,
            );
          }
          start = offset;
        }
        const length = header(res.headers, 'content-length');
        if (length !== undefined && start + Number(length) !== desc.size) {
          res.body.destroy();
          throw new FailedPreconditionError(
            `${what}: registry announces ${start + Number(length)} bytes, descriptor says ${desc.size}`,
          );
        }
        return {
          start,
          body: readWithProgressTimeout(res.body, this.client.progressTimeoutMs, what),
          host: host.host,
        };
      }
    }
    throw firstErr ?? new NotFoundError(`${desc.digest}: not found on ${this.name}`);
  }

  /** Fetches a manifest or index into memory, checking size limit and digest. */
  async fetchManifest(desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    const limit = this.client.maxManifestSize;
    if (desc.size > limit) throw this.tooLarge(desc.size, limit);
    return this.fetchSmallBlob(desc, limit, signal);
  }

  /** Fetches a small blob (a config) into memory, verifying size and digest, with retries. */
  async fetchSmallBlob(desc: Descriptor, limit: number, signal?: AbortSignal): Promise<Buffer> {
    if (desc.size > limit) {
      throw new ResourceExhaustedError(
        `${desc.digest}: ${desc.size} bytes is more than the ${limit} byte limit`,
      );
    }
    let lastErr: unknown;
    for (let attempt = 0; attempt <= this.client.retries; attempt++) {
      try {
        const { body } = await this.openBlob(desc, 0, signal);
        const chunks: Buffer[] = [];
        let n = 0;
        for await (const c of body) {
          n += c.length;
          if (n > desc.size) {
            throw new FailedPreconditionError(
              `${desc.digest} from ${this.name}: registry sent more than ${desc.size} bytes`,
            );
          }
          chunks.push(c);
        }
        const data = Buffer.concat(chunks);
        if (data.length < desc.size) {
          throw new UnavailableError(
            `${desc.digest} from ${this.name}: short read: ${data.length} of ${desc.size} bytes`,
          );
        }
        const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
        if (actual !== desc.digest) {
          throw new FailedPreconditionError(
            `${desc.digest} from ${this.name}: digest mismatch: registry sent content with digest ${actual}`,
          );
        }
        return data;
      } catch (e) {
        lastErr = e;
        if (isCanceled(e) || !retryableTransfer(e)) throw e;
        await sleep(this.client.backoff(attempt), signal);
      }
    }
    throw lastErr;
  }

  /** HEAD a blob on the push host: does the registry have it already? */
  async blobExists(host: RegistryHost, digest: Digest, signal?: AbortSignal): Promise<boolean> {
    const res = await this.client.send(host, {
      method: 'HEAD',
      path: `/${this.ref.path}/blobs/${digest}`,
      scopes: [this.scope('pull,push')],
      signal,
    });
    res.body.resume();
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw statusError(`checking ${digest} on ${host.host}/${this.ref.path}`, res.status, '');
  }

  /**
   * Starts an upload (POST blobs/uploads/). With `mountFrom` the registry is asked to mount
   * the blob from another repository: 'mounted' when it did, else an upload URL.
   */
  async startUpload(
    host: RegistryHost,
    digest: Digest,
    mountFrom?: string,
    signal?: AbortSignal,
  ): Promise<{ mounted: true } | { mounted: false; location: URL }> {
    const scopes = [this.scope('pull,push')];
    let path = `/${this.ref.path}/blobs/uploads/`;
    if (mountFrom) {
      path += `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}`;
      scopes.push(`repository:${mountFrom}:pull`);
    }
    const what = `starting upload of ${digest} to ${host.host}/${this.ref.path}`;
    const res = await this.client.send(host, {
      method: 'POST',
      path,
      scopes,
      signal,
      headers: { 'content-length': '0' },
    });
    if (res.status === 201 && mountFrom) {
      res.body.resume();
      return { mounted: true };
    }
    if (res.status !== 202) throw await this.client.error(what, res);
    res.body.resume();
    const loc = header(res.headers, 'location');
    if (!loc) throw new UnavailableError(`${what}: no Location in the answer`);
    return { mounted: false, location: new URL(loc, `${host.scheme}://${host.host}`) };
  }

  /**
   * Uploads a blob to an upload URL: one PUT, or PATCHes of `chunkSize` then a closing PUT.
   * `open(offset)` gives the blob's bytes from an offset (so a retry can start over).
   */
  async upload(
    host: RegistryHost,
    location: URL,
    desc: Descriptor,
    open: (offset: number) => AsyncIterable<Buffer>,
    opts: { chunkSize?: number; signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
  ): Promise<void> {
    const scopes = [this.scope('pull,push')];
    const what = `uploading ${desc.digest} to ${host.host}/${this.ref.path}`;
    let loc = location;
    let offset = 0;
    const chunkSize = opts.chunkSize ?? 0;
    if (chunkSize > 0) {
      while (offset < desc.size) {
        const end = Math.min(desc.size, offset + chunkSize);
        const from = offset;
        const res = await this.client.send(host, {
          method: 'PATCH',
          url: loc,
          headers: {
            'content-type': 'application/octet-stream',
            'content-length': String(end - from),
            'content-range': `${from}-${end - 1}`,
          },
          body: () => limitStream(open(from), end - from),
          scopes,
          signal: opts.signal,
        });
        if (res.status !== 202) throw await this.client.error(what, res);
        res.body.resume();
        const next = header(res.headers, 'location');
        if (next) loc = new URL(next, loc);
        offset = end;
        opts.onProgress?.(offset);
      }
    }
    const put = new URL(loc);
    put.searchParams.set('digest', desc.digest);
    const remaining = desc.size - offset;
    const from = offset;
    const res = await this.client.send(host, {
      method: 'PUT',
      url: put,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(remaining) },
      body: remaining > 0 ? () => limitStream(open(from), remaining) : Buffer.alloc(0),
      scopes,
      signal: opts.signal,
    });
    if (res.status !== 201 && res.status !== 204) throw await this.client.error(what, res);
    res.body.resume();
    opts.onProgress?.(desc.size);
  }

  /** PUT a manifest or index under a tag or digest. */
  async putManifest(
    host: RegistryHost,
    object: string,
    desc: Descriptor,
    body: Buffer,
    signal?: AbortSignal,
  ): Promise<void> {
    const what = `pushing manifest ${desc.digest} to ${host.host}/${this.ref.path}:${object}`;
    const res = await this.client.send(host, {
      method: 'PUT',
      path: `/${this.ref.path}/manifests/${object}`,
      headers: { 'content-type': desc.mediaType, 'content-length': String(body.length) },
      body,
      scopes: [this.scope('pull,push')],
      signal,
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 204)
      throw await this.client.error(what, res);
    res.body.resume();
  }
}

async function* limitStream(src: AsyncIterable<Buffer>, n: number): AsyncGenerator<Buffer> {
  let left = n;
  for await (const c of src) {
    if (left <= 0) break;
    const part = c.length > left ? c.subarray(0, left) : c;
    left -= part.length;
    yield part;
    if (left <= 0) break;
  }
  if (left > 0) throw new UnavailableError(`upload source ended ${left} bytes early`);
}

/** Errors worth another attempt of a transfer: network trouble, stalls, 5xx, short reads. */
export function retryableTransfer(e: unknown): boolean {
  const code = (e as BerthError)?.code;
  if (code === 'ERR_UNAVAILABLE' || code === 'ERR_DEADLINE_EXCEEDED') return true;
  const errno = (e as NodeJS.ErrnoException)?.code;
  return (
    (typeof errno === 'string' &&
      /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|ECONNABORTED|EAI_AGAIN|ERR_STREAM_PREMATURE_CLOSE)$/.test(
        errno,
      )) ||
    (e as Error)?.message === 'aborted'
  );
}
