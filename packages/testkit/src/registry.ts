import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makeTempDir, removeDir, stopChild } from './processes';

export const registryInstalled = (): boolean => {
  try {
    execFileSync('/usr/bin/docker-registry', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** A free TCP port on 127.0.0.1 (the kernel picks it; a race with other listeners is unlikely). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

function listen(server: Server): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port));
  });
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((res) => server.close(() => res()));
}

/** A bcrypt htpasswd line through libcrypt (perl's crypt), as the registry requires bcrypt. */
export function htpasswdLine(user: string, password: string): string {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const salt = [...randomBytes(22)].map((b) => alphabet[b % 64]).join('');
  const hash = execFileSync('perl', [
    '-e',
    'print crypt($ARGV[0], $ARGV[1])',
    password,
    `$2b$05$${salt}`,
  ]).toString();
  if (!hash.startsWith('$2b$')) throw new Error('libcrypt here does not support bcrypt');
  return `${user}:${hash}`;
}

// ---------------------------------------------------------------- token server

export interface TokenServerOptions {
  /** Accepted basic credentials for the token endpoint. */
  users?: Record<string, string>;
  /** Hand out pull-only tokens without credentials (default true). */
  anonymousPull?: boolean;
  service?: string;
  issuer?: string;
}

export interface TokenRequest {
  account?: string;
  service?: string;
  scopes: string[];
  status: number;
}

export interface TokenServer {
  readonly url: string;
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certPath: string;
  /** Every token request so far. */
  readonly requests: TokenRequest[];
  close(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/**
 * A minimal Docker token server (distribution's token auth): GET /token?service&scope,
 * basic credentials checked against `users`, an RS256 JWT carrying the certificate in x5c,
 * which the registry trusts through `rootcertbundle`.
 */
export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
  const dir = makeTempDir('berth-token-');
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-subj',
      '/CN=berth-token',
      '-days',
      '2',
    ],
    { stdio: 'ignore' },
  );
  const key = readFileSync(keyPath);
  const certPem = readFileSync(certPath, 'utf8');
  const certDer = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const service = opts.service ?? 'berth-test-registry';
  const issuer = opts.issuer ?? 'berth-test-issuer';
  const anonymousPull = opts.anonymousPull ?? true;
  const requests: TokenRequest[] = [];

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    let account: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [user, ...rest] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      if (opts.users?.[user!] !== undefined && opts.users[user!] === rest.join(':')) account = user;
      else {
        requests.push({
          account: user,
          service: url.searchParams.get('service') ?? undefined,
          scopes,
          status: 401,
        });
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
    }
    if (!account && !anonymousPull) {
      requests.push({ service: url.searchParams.get('service') ?? undefined, scopes, status: 401 });
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ details: 'authentication required' }));
      return;
    }
    const access = scopes
      .flatMap((s) => s.split(' '))
      .map((s) => {
        const [type, ...rest] = s.split(':');
        const actions = rest.pop()!.split(',');
        return {
          type,
          name: rest.join(':'),
          actions: account ? actions : actions.filter((a) => a === 'pull'),
        };
      });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: account ?? '',
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(key);
    const token = `${signingInput}.${b64url(signature)}`;
    requests.push({ account, service: url.searchParams.get('service') ?? undefined, scopes, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }),
    );
  });
  const port = await listen(server);
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    certPath,
    requests,
    close: async () => {
      await closeServer(server);
      removeDir(dir);
    },
  };
}

// ---------------------------------------------------------------- registry

export interface RegistryOptions {
  /** Users for basic auth (htpasswd). */
  htpasswd?: Record<string, string>;
  /** Bearer token auth through a token server started for this registry. */
  tokenAuth?: boolean | TokenServerOptions;
}

export interface Registry {
  /** `127.0.0.1:<port>`: the reference domain. */
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly pid: number;
  readonly tokenServer?: TokenServer;
  logs(): string;
  stop(): Promise<void>;
}

async function waitForHttp(url: string, child: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`registry exited (${child.exitCode}) before it answered`);
    const ok = await new Promise<boolean>((res) => {
      const req = httpRequest(url, { method: 'GET', timeout: 1000 }, (r) => {
        r.resume();
        res(true);
      });
      req.on('error', () => res(false));
      req.on('timeout', () => {
        req.destroy();
        res(false);
      });
      req.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts Debian's docker-registry (distribution 2.8) on 127.0.0.1 with temp storage and config. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const dir = makeTempDir('berth-registry-');
  const port = await freePort();
  let tokenServer: TokenServer | undefined;
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    'health:',
    '  storagedriver:',
    '    enabled: false',
  ];
  if (opts.htpasswd) {
    const htpasswd = join(dir, 'htpasswd');
    writeFileSync(
      htpasswd,
      `${Object.entries(opts.htpasswd)
        .map(([u, p]) => htpasswdLine(u, p))
        .join('\n')}\n`,
    );
    lines.push('auth:', '  htpasswd:', '    realm: berth-test', `    path: ${htpasswd}`);
  } else if (opts.tokenAuth) {
    tokenServer = await startTokenServer(opts.tokenAuth === true ? {} : opts.tokenAuth);
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${tokenServer.realm}`,
      `    service: ${tokenServer.service}`,
      `    issuer: ${tokenServer.issuer}`,
      `    rootcertbundle: ${tokenServer.certPath}`,
    );
  }
  const config = join(dir, 'config.yml');
  writeFileSync(config, `${lines.join('\n')}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  const collect = (b: Buffer) => {
    logs += b.toString();
    if (logs.length > 200_000) logs = logs.slice(-100_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const stop = async () => {
    await stopChild(child);
    await tokenServer?.close();
    removeDir(dir);
  };
  try {
    await waitForHttp(`http://127.0.0.1:${port}/v2/`, child);
  } catch (e) {
    await stop();
    throw new Error(`docker-registry did not start: ${(e as Error).message}\n${logs}`);
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    pid: child.pid!,
    tokenServer,
    logs: () => logs,
    stop,
  };
}

// ---------------------------------------------------------------- faulty proxy

export type Fault =
  /** Answer with this status (and Retry-After when given) instead of forwarding. */
  | { kind: 'status'; status: number; retryAfter?: string }
  /** Flip a byte of the body, keeping its length (and headers). */
  | { kind: 'corrupt' }
  /** Send only the first `bytes` of the body, then cut the connection. */
  | { kind: 'truncate'; bytes: number }
  /** Send the first `bytes`, then nothing more until the client gives up. */
  | { kind: 'stall'; bytes: number }
  /** Answer 200 with this body (a manifest, say), for GET and HEAD, with matching length and digest headers. */
  | { kind: 'replace'; body: string | Buffer; contentType?: string }
  /** Forward without the client's Range header (a server that ignores ranges). */
  | { kind: 'ignore-range' };

export interface FaultRule {
  method?: string;
  /** Matched against the request path (substring or regular expression). */
  path: string | RegExp;
  fault: Fault;
  /** How many requests it applies to (default: all). */
  times?: number;
}

export interface ProxyRequestLog {
  method: string;
  path: string;
  range?: string;
  status: number;
  bytes: number;
  fault?: Fault['kind'];
  headers: IncomingMessage['headers'];
}

export interface FaultyProxy {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly requests: ProxyRequestLog[];
  /** Body bytes sent to clients for paths containing `fragment`. */
  bytesServed(fragment: string | RegExp): number;
  addFault(rule: FaultRule): void;
  clearFaults(): void;
  close(): Promise<void>;
}

const matches = (p: string | RegExp, path: string) =>
  typeof p === 'string' ? path.includes(p) : p.test(path);

/**
 * An HTTP proxy in front of a registry that can lie (corrupt, truncate, stall, fail with
 * 5xx or 429) for the requests its rules match, and counts the body bytes it serves.
 */
export async function startFaultyProxy(target: { host: string }): Promise<FaultyProxy> {
  const [targetHost, targetPort] = target.host.split(':');
  const rules: Array<FaultRule & { left: number }> = [];
  const requests: ProxyRequestLog[] = [];
  const stalled = new Set<ServerResponse>();

  const pick = (req: IncomingMessage): Fault | undefined => {
    for (const r of rules) {
      if (r.left <= 0) continue;
      if (r.method && r.method !== req.method) continue;
      if (!matches(r.path, req.url ?? '')) continue;
      r.left--;
      return r.fault;
    }
    return undefined;
  };

  const server = createServer((req, res) => {
    const fault = pick(req);
    const log: ProxyRequestLog = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: 0,
      bytes: 0,
      headers: req.headers,
      ...(req.headers.range ? { range: String(req.headers.range) } : {}),
      ...(fault ? { fault: fault.kind } : {}),
    };
    requests.push(log);
    if (fault?.kind === 'status') {
      log.status = fault.status;
      req.resume();
      res.writeHead(fault.status, {
        'content-type': 'application/json',
        ...(fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : {}),
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
      return;
    }
    const headers = { ...req.headers };
    if (fault?.kind === 'ignore-range') delete headers.range;
    const upstream = httpRequest(
      { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers },
      (up) => {
        const status = up.statusCode ?? 502;
        log.status = status;
        const outHeaders = { ...up.headers };
        const send = (chunk: Buffer) => {
          log.bytes += chunk.length;
          res.write(chunk);
        };
        if (fault?.kind === 'replace') {
          // A lying registry: this body (and matching length and digest headers) whatever it has.
          up.resume();
          const body = Buffer.from(fault.body);
          log.status = 200;
          const h: Record<string, string> = {
            'content-length': String(body.length),
            'docker-content-digest': `sha256:${createHash('sha256').update(body).digest('hex')}`,
            'content-type': fault.contentType ?? String(up.headers['content-type'] ?? 'application/json'),
          };
          res.writeHead(200, h);
          if (req.method !== 'HEAD') send(body);
          res.end();
          return;
        }
        if (!fault || fault.kind === 'ignore-range' || status >= 300 || req.method === 'HEAD') {
          res.writeHead(status, outHeaders);
          up.on('data', send);
          up.on('end', () => res.end());
          up.on('error', () => res.destroy());
          return;
        }
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          let body: Buffer = Buffer.concat(chunks);
          switch (fault.kind) {
            case 'corrupt':
              body = Buffer.from(body);
              if (body.length > 0) body[body.length >> 1] ^= 0xff;
              res.writeHead(status, outHeaders);
              send(body);
              res.end();
              return;
            case 'truncate':
              res.writeHead(status, outHeaders);
              send(body.subarray(0, fault.bytes));
              // Let the bytes leave before the connection is cut.
              setTimeout(() => res.destroy(), 20);
              return;
            case 'stall':
              res.writeHead(status, outHeaders);
              send(body.subarray(0, fault.bytes));
              stalled.add(res);
              res.on('close', () => stalled.delete(res));
              return;
          }
        });
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  const port = await listen(server);
  return {
    host: `127.0.0.1:${port}`,
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    bytesServed: (fragment) =>
      requests.filter((r) => matches(fragment, r.path)).reduce((n, r) => n + r.bytes, 0),
    addFault: (rule) => rules.push({ ...rule, left: rule.times ?? Number.POSITIVE_INFINITY }),
    clearFaults: () => {
      rules.length = 0;
    },
    close: async () => {
      for (const r of stalled) r.destroy();
      await closeServer(server);
    },
  };
}

/**
 * A hosts.toml (registry.config_path layout: `<dir>/<host>/hosts.toml`) that sends pulls of
 * `host` to it over plain HTTP, as a loopback docker-registry needs.
 */
export function writePlainHttpHosts(hostsDir: string, host: string): void {
  mkdirSync(join(hostsDir, host), { recursive: true });
  writeFileSync(
    join(hostsDir, host, 'hosts.toml'),
    `server = "http://${host}"\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
}

/** GET `url` until it answers (a server just started takes a moment to listen), for up to 10 s; the body. */
export async function httpGetRetry(url: string): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      return await res.text();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`GET ${url}: ${(last as Error)?.message}`);
}

/**
 * One GET of `url` on a connection of its own (no keep-alive pool: concurrent calls are as many
 * connections); the body, or a rejection on an error or after `timeoutMs`.
 */
export function httpGet(url: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
