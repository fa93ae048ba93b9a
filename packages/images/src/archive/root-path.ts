import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError } from '@berth/api';

/** Linux NAME_MAX and PATH_MAX (bytes, PATH_MAX counting the NUL). */
export const NAME_MAX = 255;
export const PATH_MAX = 4096;
/** Symlinks followed while resolving one path (continuity's bound). */
const MAX_LINKS = 255;

/** A name for messages: quoted, long ones shortened. */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 100)}...${name.slice(-60)}` : name);
}

/**
 * Cleans a layer entry name into its components relative to the layer root: a leading
 * `/` is dropped, `.` and empty components vanish, `..` pops. A `..` that would climb above
 * the root is refused (containerd clamps it silently; Docker refuses it: no legitimate
 * layer needs it). An empty result is the root itself.
 */
export function cleanEntryName(name: string, what = 'layer entry'): string[] {
  if (name.includes('\0')) throw new InvalidArgumentError(`${what} ${quoteName(name)}: name contains NUL`);
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0)
        throw new InvalidArgumentError(`${what} ${quoteName(name)}: path escapes the layer root`);
      out.pop();
      continue;
    }
    if (Buffer.byteLength(part) > NAME_MAX) {
      throw new InvalidArgumentError(`${what} ${quoteName(name)}: component longer than ${NAME_MAX} bytes`);
    }
    out.push(part);
  }
  return out;
}

/**
 * Resolves `parts` below `root` as if `root` were `/` (continuity's fs.RootPath): every
 * symlink met is followed, absolute targets restart at the root, `..` stops at the root.
 * Components that do not exist are kept as they are. The result never leaves the root and
 * holds no symlink: a prefix of existing directories, then (maybe) the last existing
 * component of any type, or components that do not exist. A non-directory met in the
 * middle is a FailedPrecondition naming `entry`. Synchronous: see apply.ts for why.
 */
export function resolveInRoot(root: string, parts: readonly string[], entry = ''): string[] {
  const out: string[] = [];
  const queue = [...parts];
  let links = 0;
  while (queue.length > 0) {
    const p = queue.shift()!;
    if (p === '' || p === '.') continue;
    if (p === '..') {
      out.pop();
      continue;
    }
    const full = `${root}/${out.length > 0 ? `${out.join('/')}/` : ''}${p}`;
    let st: Stats;
    try {
      st = lstatSync(full);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
      out.push(p);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) {
        throw new FailedPreconditionError(
          `${entry ? `layer entry ${quoteName(entry)}: ` : ''}too many levels of symbolic links`,
        );
      }
      const target = readlinkSync(full);
      if (target.startsWith('/')) out.length = 0;
      queue.unshift(...target.split('/'));
      continue;
    }
    if (!st.isDirectory() && queue.some((q) => q !== '' && q !== '.' && q !== '..')) {
      throw new FailedPreconditionError(
        `${entry ? `layer entry ${quoteName(entry)}: ` : ''}/${out.concat(p).join('/')} is not a directory`,
      );
    }
    out.push(p);
  }
  return out;
}
