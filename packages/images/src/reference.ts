import { type Digest, InvalidArgumentError, parseDigest } from '@berth/api';

/**
 * An image reference, normalised as Docker and containerd do (`busybox` is
 * `docker.io/library/busybox:latest`).
 */
export interface ImageReference {
  /** Registry host, with a port when one was given: `docker.io`, `localhost:5000`. */
  domain: string;
  /** Repository path below the domain: `library/busybox`. */
  path: string;
  tag?: string;
  digest?: Digest;
}

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
/** Docker's limit on a repository name (domain and path). */
export const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar of docker/distribution's reference package, written so that JavaScript's
// backtracking engine stays linear (no empty separators, no nested optional repeats).
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|-+)';
const NAME_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const NAME = `(?:${DOMAIN}/)?${NAME_COMPONENT}(?:/${NAME_COMPONENT})*`;
const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const ANCHORED_NAME_RE = new RegExp(`^(?:(${DOMAIN})/)?(${NAME_COMPONENT}(?:/${NAME_COMPONENT})*)$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;
/** Longer input is refused before any regular expression sees it. */
const MAX_INPUT = 4096;

function invalid(input: string, why: string): InvalidArgumentError {
  const shown = input.length > 300 ? `${input.slice(0, 300)}...` : input;
  return new InvalidArgumentError(`invalid reference ${JSON.stringify(shown)}: ${why}`);
}

/** Splits off the registry the way Docker does: a first component with `.` or `:`, or `localhost`. */
function splitDomain(name: string): { domain: string; remainder: string } {
  const i = name.indexOf('/');
  let domain: string;
  let remainder: string;
  if (i === -1 || (!/[.:]/.test(name.slice(0, i)) && name.slice(0, i) !== 'localhost')) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = name.slice(0, i);
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

export interface ParseReferenceOptions {
  /**
   * Docker's ParseDockerRef (default true): a reference with neither tag nor digest gets
   * `latest`, and one with both keeps only the digest. False keeps what was written.
   */
  dockerDefaults?: boolean;
}

/**
 * Parses and normalises an image reference (Docker's ParseNormalizedNamed, then
 * ParseDockerRef). InvalidArgument naming the input when it is not a valid reference.
 */
export function parseReference(input: string, opts: ParseReferenceOptions = {}): ImageReference {
  if (typeof input !== 'string' || input === '')
    throw invalid(String(input ?? ''), 'repository name must have at least one component');
  if (input.length > MAX_INPUT) throw invalid(input, `longer than ${MAX_INPUT} characters`);
  if (IDENTIFIER_RE.test(input)) throw invalid(input, 'cannot specify 64-byte hexadecimal strings');
  const { domain, remainder } = splitDomain(input);
  const tagSep = remainder.indexOf(':');
  const remoteName = tagSep > -1 ? remainder.slice(0, tagSep) : remainder;
  if (remoteName.toLowerCase() !== remoteName) throw invalid(input, 'repository name must be lowercase');

  const full = `${domain}/${remainder}`;
  const m = REFERENCE_RE.exec(full);
  if (!m) {
    if (REFERENCE_RE.test(full.toLowerCase())) throw invalid(input, 'repository name must be lowercase');
    throw invalid(input, 'invalid reference format');
  }
  const name = m[1]!;
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(input, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const nm = ANCHORED_NAME_RE.exec(name);
  // No domain means the first component looked like one (a dot, a colon) but is not valid.
  if (!nm || nm[1] === undefined) throw invalid(input, 'invalid reference format');
  let tag: string | undefined = m[2];
  const digest: string | undefined = m[3];
  if (digest !== undefined) {
    try {
      parseDigest(digest);
    } catch (e) {
      throw invalid(input, (e as Error).message);
    }
  }
  if (opts.dockerDefaults !== false) {
    if (digest !== undefined) tag = undefined;
    else if (tag === undefined) tag = DEFAULT_TAG;
  }
  const ref: ImageReference = { domain: nm[1], path: nm[2]! };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The normalised string: `docker.io/library/busybox:latest`, `host:5000/a/b@sha256:...`. */
export function formatReference(ref: ImageReference): string {
  let s = `${ref.domain}/${ref.path}`;
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** `parseReference` then `formatReference`: the form image names are stored under. */
export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}

/** The repository without tag or digest: `docker.io/library/busybox`. */
export function repositoryName(ref: Pick<ImageReference, 'domain' | 'path'>): string {
  return `${ref.domain}/${ref.path}`;
}

/** Docker's short form: `busybox:latest`, `user/app:1`, `localhost:5000/x:y`. */
export function familiarReference(ref: ImageReference): string {
  let name = repositoryName(ref);
  if (ref.domain === DEFAULT_DOMAIN) {
    name =
      ref.path.startsWith(OFFICIAL_REPO_PREFIX) && ref.path.split('/').length === 2
        ? ref.path.slice(OFFICIAL_REPO_PREFIX.length)
        : ref.path;
  }
  return formatReference({ ...ref, domain: '', path: name }).slice(1);
}

/** Validates a tag on its own (for `tag` and push targets). */
export function validateTag(tag: string): string {
  if (!TAG_RE.test(tag))
    throw new InvalidArgumentError(`invalid tag ${JSON.stringify(tag)}: invalid tag format`);
  return tag;
}

/** The tag or digest a registry request names (`manifests/<object>`). */
export function referenceObject(ref: ImageReference): string {
  if (ref.digest) return ref.digest;
  if (ref.tag) return ref.tag;
  throw new InvalidArgumentError(`reference ${formatReference(ref)}: object required (a tag or a digest)`);
}
