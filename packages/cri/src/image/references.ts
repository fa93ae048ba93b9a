import { InvalidArgumentError, NotFoundError, type wire } from '@berth/api';
import {
  type Credentials,
  type CredentialsFunc,
  formatReference,
  type ImageReference,
  parseReference,
} from '@berth/images';

/** The label containerd's CRI puts on every image record it makes. */
export const CRI_IMAGE_LABEL = 'io.cri-containerd.image';
export const CRI_IMAGE_LABEL_VALUE = 'managed';

const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const HEX_RE = /^[a-f0-9]+$/;

/** Whether `s` is an image id spelled as a digest (`sha256:<hex>`), as opposed to a reference. */
export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s) && /^sha(256|384|512):[a-f0-9]{64,128}$/.test(s);
}

/** A reference parsed as Docker's ParseDockerRef does; undefined when it is not one. */
export function tryParseReference(s: string): ImageReference | undefined {
  try {
    return parseReference(s);
  } catch {
    return undefined;
  }
}

/**
 * The records containerd's CRI keeps for a pulled image besides its id: the tag reference
 * (none when pulled by digest) and the repo digest `<repository>@<target digest>`.
 */
export function repoDigestAndTag(
  ref: ImageReference,
  targetDigest: string,
): { repoTag?: string; repoDigest: string } {
  const repository = `${ref.domain}/${ref.path}`;
  const out: { repoTag?: string; repoDigest: string } = { repoDigest: `${repository}@${targetDigest}` };
  if (ref.tag && !ref.digest)
    out.repoTag = formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag });
  return out;
}

/** Precedence of containerd's reference sort: more information first. */
function rank(r: string): number {
  if (isDigest(r)) return 4;
  let ref: ImageReference;
  try {
    ref = parseReference(r, { dockerDefaults: false });
  } catch {
    return 5;
  }
  if (ref.tag && ref.digest) return 0;
  if (ref.tag) return 1;
  if (ref.digest) return 2;
  return 3;
}

/** An image's references in the order containerd's CRI keeps them (tags, digests, then the id). */
export function sortReferences(refs: Iterable<string>): string[] {
  return [...new Set(refs)]
    .map((r) => ({ r, k: rank(r) }))
    .sort((a, b) => a.k - b.k || (a.r < b.r ? -1 : a.r > b.r ? 1 : 0))
    .map(({ r }) => r);
}

/** repo_tags and repo_digests of an image: its references that are tagged, or canonical. */
export function splitReferences(refs: string[]): { repoTags: string[]; repoDigests: string[] } {
  const repoTags: string[] = [];
  const repoDigests: string[] = [];
  for (const r of refs) {
    if (isDigest(r)) continue;
    let ref: ImageReference;
    try {
      ref = parseReference(r, { dockerDefaults: false });
    } catch {
      continue;
    }
    if (ref.digest) repoDigests.push(formatReference(ref));
    else if (ref.tag) repoTags.push(formatReference(ref));
  }
  return { repoTags, repoDigests };
}

/**
 * The user an image runs as, as the CRI reports it: `uid` when the user part of the config's
 * `User` (before any `:group`) is numeric, `username` otherwise; neither when unset.
 */
export function userFromImage(user: string | undefined): { uid?: number; username: string } {
  if (!user) return { username: '' };
  const name = user.split(':')[0] ?? '';
  if (/^[+-]?\d+$/.test(name)) {
    const n = Number(name);
    if (Number.isSafeInteger(n)) return { uid: n, username: '' };
  }
  return { username: name };
}

/** The host of a CRI AuthConfig's `server_address` (`https://host/v1/`, `host:port`, `host`). */
export function serverAddressHost(address: string): string {
  let a = address.trim().replace(/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//, '');
  const slash = a.indexOf('/');
  if (slash >= 0) a = a.slice(0, slash);
  return a;
}

const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/**
 * The credentials a PullImage request's AuthConfig gives, as containerd's ParseAuth reads it:
 * username/password first, then an identity token (a refresh token), then `auth` (base64
 * `user:password`); a `server_address` limits them to that registry host. Undefined when the
 * request has no credentials (anonymous pulls). InvalidArgument when `auth` does not decode
 * to `user:password`.
 */
export function authCredentials(auth: wire.cri.AuthConfig | undefined): CredentialsFunc | undefined {
  if (!auth) return undefined;
  let creds: Credentials | undefined;
  if (auth.username) creds = { username: auth.username, password: auth.password };
  else if (auth.identityToken) creds = { identityToken: auth.identityToken };
  else if (auth.auth) {
    const decoded = Buffer.from(auth.auth, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) throw new InvalidArgumentError('invalid auth config: "auth" is not base64 of "user:password"');
    creds = { username: decoded.slice(0, i), password: decoded.slice(i + 1).replace(/\0+$/, '') };
  }
  // registry_token (a bearer token handed in) is not used: containerd 1.6 ignores it too.
  if (!creds) return undefined;
  const c = creds;
  const only = auth.serverAddress ? serverAddressHost(auth.serverAddress) : undefined;
  return async (host: string) => {
    if (only === undefined || only === host) return c;
    if (DOCKER_HUB_HOSTS.has(only) && DOCKER_HUB_HOSTS.has(host)) return c;
    return undefined;
  };
}

/**
 * The image id `query` names among `ids` (sha256:<hex>), as containerd's digest set looks
 * ids up: a full id, or a unique prefix of its hex (`3f57d9401f8d`). NotFound when none
 * matches; InvalidArgument when the prefix is ambiguous.
 */
export function lookupId(ids: Iterable<string>, query: string): string {
  const all = [...ids];
  if (all.includes(query)) return query;
  if (!HEX_RE.test(query)) throw new NotFoundError(`image "${query}" not found`);
  const matches = all.filter((id) => id.slice(id.indexOf(':') + 1).startsWith(query));
  if (matches.length === 0) throw new NotFoundError(`image "${query}" not found`);
  if (matches.length > 1)
    throw new InvalidArgumentError(`image id prefix "${query}" is ambiguous: ${matches.length} images match`);
  return matches[0]!;
}

const SPEC_KEYS = ['created', 'author', 'architecture', 'variant', 'os', 'os.version', 'os.features'];
const ALWAYS = new Set(['architecture', 'os']);
const CONFIG_KEYS = [
  'User',
  'ExposedPorts',
  'Env',
  'Entrypoint',
  'Cmd',
  'Volumes',
  'WorkingDir',
  'Labels',
  'StopSignal',
  'ArgsEscaped',
];
const HISTORY_KEYS = ['created', 'created_by', 'author', 'comment', 'empty_layer'];

function empty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/** A time as Go's RFC3339Nano marshals it: trailing zeros of the fraction dropped. */
export function goTime(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  return v.replace(/\.(\d+)(?=Z|[+-]\d\d:\d\d$)/, (_m, frac: string) => {
    const t = frac.replace(/0+$/, '');
    return t ? `.${t}` : '';
  });
}

function pick(src: Record<string, unknown>, keys: string[], always: Set<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = src[k];
    if (always.has(k)) out[k] = v ?? '';
    else if (!empty(v)) out[k] = k === 'created' ? goTime(v) : v;
  }
  return out;
}

/**
 * The OCI image config as containerd's Go structs marshal it (field order, omitempty), for
 * ImageStatus' verbose `imageSpec`.
 */
export function imageSpecJson(config: Record<string, unknown>): Record<string, unknown> {
  const out = pick(config, SPEC_KEYS, ALWAYS);
  out.config = pick((config.config ?? {}) as Record<string, unknown>, CONFIG_KEYS, new Set());
  const rootfs = (config.rootfs ?? {}) as Record<string, unknown>;
  out.rootfs = { type: rootfs.type ?? '', diff_ids: rootfs.diff_ids ?? null };
  if (Array.isArray(config.history) && config.history.length > 0)
    out.history = config.history.map((h) =>
      pick((h ?? {}) as Record<string, unknown>, HISTORY_KEYS, new Set()),
    );
  return out;
}
