import type { IncomingHttpHeaders } from 'node:http';
import { PermissionDeniedError, UnavailableError } from '@berth/api';
import type { Credentials, CredentialsFunc } from './credentials';
import type { RegistryHost } from './hosts';
import { readBody } from './http';

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses WWW-Authenticate values: `Bearer realm="...",service="...",scope="..."`, `Basic realm=...`. */
export function parseChallenges(values: string | string[] | undefined): Challenge[] {
  const list = values === undefined ? [] : Array.isArray(values) ? values : [values];
  const out: Challenge[] = [];
  for (const value of list) {
    let s = value.trim();
    while (s !== '') {
      const m = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*/.exec(s);
      if (!m) break;
      const ch: Challenge = { scheme: m[1]!.toLowerCase(), params: {} };
      s = s.slice(m[0].length);
      for (;;) {
        const p = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/.exec(s);
        if (!p) break;
        ch.params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
        s = s.slice(p[0].length);
      }
      out.push(ch);
      s = s.replace(/^,\s*/, '');
    }
  }
  return out;
}

interface HostAuth {
  challenge: Challenge;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

export interface AuthorizerOptions {
  credentials?: CredentialsFunc;
  /** Milliseconds to wait for a token endpoint's answer. */
  timeoutMs?: number;
  userAgent?: string;
  /** OAuth client id for identity-token exchanges. */
  clientId?: string;
}

const hostKey = (h: RegistryHost) => `${h.scheme}://${h.host}`;
/** Tokens are refreshed this long before they expire. */
const EXPIRY_SLACK_MS = 10_000;

/**
 * Answers registry challenges as containerd's docker authorizer: nothing until a 401, then
 * Basic with the host's credentials, or a Bearer token fetched from the challenge's realm
 * for the request's scopes (anonymously without credentials), cached until it expires.
 */
export class Authorizer {
  private readonly hosts = new Map<string, HostAuth>();
  private readonly tokens = new Map<string, Promise<CachedToken>>();

  constructor(private readonly opts: AuthorizerOptions = {}) {}

  private async credentialsFor(host: RegistryHost): Promise<Credentials | undefined> {
    return this.opts.credentials ? this.opts.credentials(host.host) : undefined;
  }

  /** The Authorization header value for a request to `host` needing `scopes`, if any is known. */
  async authorize(
    host: RegistryHost,
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const auth = this.hosts.get(hostKey(host));
    if (!auth) return undefined;
    const { challenge } = auth;
    if (challenge.scheme === 'basic') {
      const c = await this.credentialsFor(host);
      if (!c?.username) return undefined;
      return `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
    }
    if (challenge.scheme === 'bearer') {
      const all = [
        ...new Set([...scopes, ...(challenge.params.scope ? challenge.params.scope.split(' ') : [])]),
      ].sort();
      const key = `${hostKey(host)}|${all.join(' ')}`;
      let p = this.tokens.get(key);
      if (p) {
        const t = await p.catch(() => undefined);
        if (!t || t.expiresAt - EXPIRY_SLACK_MS < Date.now()) p = undefined;
      }
      if (!p) {
        p = this.fetchToken(host, challenge, all, signal);
        this.tokens.set(key, p);
        p.catch(() => this.tokens.delete(key));
      }
      return `Bearer ${(await p).token}`;
    }
    return undefined;
  }

  /**
   * Records a 401's challenge (dropping tokens cached for the host, which it refused).
   * False when the answer carries no challenge this authorizer can meet.
   */
  handleUnauthorized(host: RegistryHost, headers: IncomingHttpHeaders): boolean {
    const challenges = parseChallenges(headers['www-authenticate']);
    const ch = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!ch) return false;
    const key = hostKey(host);
    this.hosts.set(key, { challenge: ch });
    for (const k of [...this.tokens.keys()]) if (k.startsWith(`${key}|`)) this.tokens.delete(k);
    return true;
  }

  private async fetchToken(
    host: RegistryHost,
    ch: Challenge,
    scopes: string[],
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (!realm) throw new PermissionDeniedError(`${host.host}: bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new PermissionDeniedError(`${host.host}: invalid token realm ${JSON.stringify(realm)}`);
    }
    const creds = await this.credentialsFor(host);
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent ?? 'berth' };
    let body: Buffer | undefined;
    let method = 'GET';
    if (creds?.identityToken) {
      method = 'POST';
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: creds.identityToken,
        client_id: this.opts.clientId ?? 'berth',
        ...(ch.params.service ? { service: ch.params.service } : {}),
        scope: scopes.join(' '),
      });
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (ch.params.service) url.searchParams.set('service', ch.params.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds?.username) {
        url.searchParams.set('account', creds.username);
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
      }
    }
    const started = Date.now();
    let res: Awaited<ReturnType<RegistryHost['transport']['request']>>;
    try {
      res = await host.transport.request({
        method,
        url,
        headers,
        body,
        timeoutMs: this.opts.timeoutMs ?? 30_000,
        signal,
      });
    } catch (e) {
      throw new UnavailableError(
        `fetching token from ${url.origin}${url.pathname}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const text = (await readBody(res.body, 1 << 20, `token from ${url.origin}`)).toString('utf8');
    if (res.status === 401 || res.status === 403) {
      throw new PermissionDeniedError(
        `${host.host}: authorization failed: token endpoint ${url.origin}${url.pathname} answered ${res.status}${creds?.username ? ` for user ${creds.username}` : ' (no credentials)'}`,
      );
    }
    if (res.status !== 200) {
      throw new UnavailableError(
        `${host.host}: token endpoint ${url.origin}${url.pathname} answered ${res.status}: ${text.slice(0, 200)}`,
      );
    }
    let doc: { token?: string; access_token?: string; expires_in?: number };
    try {
      doc = JSON.parse(text);
    } catch {
      throw new UnavailableError(`${host.host}: token endpoint answered malformed JSON`);
    }
    const token = doc.token || doc.access_token;
    if (!token) throw new UnavailableError(`${host.host}: token endpoint answered without a token`);
    const expiresIn = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
    return { token, expiresAt: started + expiresIn * 1000 };
  }
}
