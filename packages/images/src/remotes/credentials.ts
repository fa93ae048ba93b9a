import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from '@berth/api';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the token endpoint. */
  identityToken?: string;
}

/** Looks up credentials for a registry host (`host[:port]`, as contacted). */
export type CredentialsFunc = (host: string) => Promise<Credentials | undefined>;

/** Fixed credentials for every host (a `--user name:password` flag). */
export function staticCredentials(creds: Credentials | string): CredentialsFunc {
  let c: Credentials;
  if (typeof creds === 'string') {
    const i = creds.indexOf(':');
    c =
      i < 0
        ? { username: creds, password: '' }
        : { username: creds.slice(0, i), password: creds.slice(i + 1) };
  } else c = creds;
  return async () => c;
}

/** Docker's convertToHostname: `https://index.docker.io/v1/` is `index.docker.io`. */
function hostOfKey(key: string): string {
  let k = key.replace(/^https?:\/\//, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  return k;
}

export function defaultDockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG || join(homedir(), '.docker');
  return join(dir, 'config.json');
}

/**
 * Credentials from a Docker client config (`~/.docker/config.json`, or `$DOCKER_CONFIG`):
 * `auths.<host>.auth` (base64 `user:password`), `username`/`password`, `identitytoken`.
 * Docker Hub is found under `https://index.docker.io/v1/` as Docker writes it. Credential
 * helpers (`credsStore`, `credHelpers`) are not run.
 */
export function dockerConfigCredentials(path = defaultDockerConfigPath()): CredentialsFunc {
  let cache: Promise<Map<string, Credentials>> | undefined;
  const load = async (): Promise<Map<string, Credentials>> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw e;
    }
    let doc: { auths?: Record<string, Record<string, string>> };
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new InvalidArgumentError(`docker config ${path}: invalid JSON: ${(e as Error).message}`);
    }
    const out = new Map<string, Credentials>();
    for (const [key, entry] of Object.entries(doc.auths ?? {})) {
      if (!entry || typeof entry !== 'object') continue;
      const c: Credentials = {};
      if (typeof entry.auth === 'string' && entry.auth !== '') {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
        const i = decoded.indexOf(':');
        if (i < 0)
          throw new InvalidArgumentError(
            `docker config ${path}: auth for ${key} is not base64 "user:password"`,
          );
        c.username = decoded.slice(0, i);
        c.password = decoded.slice(i + 1);
      } else {
        if (typeof entry.username === 'string') c.username = entry.username;
        if (typeof entry.password === 'string') c.password = entry.password;
      }
      if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '')
        c.identityToken = entry.identitytoken;
      if (c.username === undefined && c.identityToken === undefined) continue;
      const host = hostOfKey(key);
      // An exact key wins over a normalised one (`https://host/v1/` and `host` both written).
      if (!out.has(host) || key === host) out.set(host, c);
    }
    return out;
  };
  return async (host: string) => {
    cache ??= load();
    const m = await cache;
    const found = m.get(host);
    if (found) return found;
    if (host === 'registry-1.docker.io' || host === 'docker.io')
      return m.get('index.docker.io') ?? m.get('docker.io');
    return undefined;
  };
}
