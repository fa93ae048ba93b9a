import { lstat, readFile, readlink } from 'node:fs/promises';
import { posix } from 'node:path';

/**
 * Reads one file of a container's root filesystem by its path inside the container
 * (`/etc/passwd`); resolves undefined when the file does not exist.
 */
export type RootfsReader = (path: string) => Promise<Buffer | undefined>;

const MAX_SYMLINKS = 255;

/**
 * The host path of `path` inside `root`, following symlinks as if `root` were `/`: an
 * absolute link target starts again at root and `..` never climbs above it, so an image's
 * `/etc/passwd -> ../../../../etc/passwd` reads the image's file, not the host's
 * (continuity's fs.RootPath). Components that do not exist are kept as they are.
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  const pending = posix.normalize(`/${path}`).split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = posix.join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = (await lstat(host)).isSymbolicLink();
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS)
      throw new Error(`${posix.join('/', ...resolved, part)}: too many levels of symbolic links`);
    const target = await readlink(host);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return posix.join(root, ...resolved);
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A reader over a host directory holding the container's root filesystem. */
export function directoryReader(root: string): RootfsReader {
  return async (path) => {
    try {
      return await readFile(await resolveInRoot(root, path));
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  };
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

// As runc's parser: a number that does not parse counts as 0 (some files misbehave).
function toId(field: string | undefined): number {
  if (field === undefined || !/^[+-]?\d+$/.test(field)) return 0;
  const n = Number(field);
  return Number.isSafeInteger(n) ? n : 0;
}

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** /etc/passwd entries (name:password:uid:gid:gecos:home:shell), as runc reads them. */
export function parsePasswd(text: string): PasswdEntry[] {
  return lines(text).map((line) => {
    const f = line.split(':');
    return { name: f[0] ?? '', uid: toId(f[2]), gid: toId(f[3]), home: f[5] ?? '', shell: f[6] ?? '' };
  });
}

/** /etc/group entries (name:password:gid:members); `#` starts a comment line, as in glibc. */
export function parseGroup(text: string): GroupEntry[] {
  return lines(text)
    .filter((l) => !l.startsWith('#'))
    .map((line) => {
      const f = line.split(':');
      return { name: f[0] ?? '', gid: toId(f[2]), members: f[3] ? f[3].split(',') : [] };
    });
}
