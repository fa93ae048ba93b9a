import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import {
  chmod,
  link as hardlink,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename as renamePath,
  rm,
  symlink as symlinkPath,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { lgetxattr, llistxattr, lsetxattr, mknod } from '@berth/sys';
import { copyTree, splitDevice } from '../copy-tree';

/**
 * Small file system edits the suite applies both through a snapshot's mounts and to a plain
 * "flat" directory, then compares the two (containerd's continuity/fs/fstest, in our words).
 * Modes are set explicitly, so the process umask does not matter.
 */
export type Applier = (root: string) => Promise<void>;

const at = (root: string, path: string) => join(root, path);

export const apply =
  (...appliers: Applier[]): Applier =>
  async (root) => {
    for (const a of appliers) await a(root);
  };

export const createFile =
  (path: string, content: string | Buffer, mode: number): Applier =>
  async (root) => {
    await writeFile(at(root, path), content);
    await chmod(at(root, path), mode);
  };

export const createDir =
  (path: string, mode: number): Applier =>
  async (root) => {
    await mkdir(at(root, path));
    await chmod(at(root, path), mode);
  };

export const removeAll =
  (path: string): Applier =>
  (root) =>
    rm(at(root, path), { recursive: true, force: true });

export const chown =
  (path: string, uid: number, gid: number): Applier =>
  (root) =>
    lchown(at(root, path), uid, gid);

export const chmodPath =
  (path: string, mode: number): Applier =>
  (root) =>
    chmod(at(root, path), mode);

/** A hard link at newPath to oldPath. */
export const link =
  (oldPath: string, newPath: string): Applier =>
  (root) =>
    hardlink(at(root, oldPath), at(root, newPath));

export const symlink =
  (target: string, path: string): Applier =>
  (root) =>
    symlinkPath(target, at(root, path));

export const mkfifo =
  (path: string, mode: number): Applier =>
  async (root) => {
    mknod(at(root, path), 0o010000 | mode);
  };

export const mkchardev =
  (path: string, mode: number, major: number, minor: number): Applier =>
  async (root) => {
    mknod(at(root, path), 0o020000 | mode, major, minor);
  };

export const setXattr =
  (path: string, name: string, value: string): Applier =>
  async (root) => {
    lsetxattr(at(root, path), name, Buffer.from(value));
  };

/** Sets access and modification time (seconds since the epoch) without following symlinks. */
export const setTimes =
  (path: string, atime: number, mtime: number): Applier =>
  (root) =>
    lutimes(at(root, path), atime, mtime);

/**
 * Renames as mv(1) does: where overlayfs refuses to rename a directory that comes from a
 * lower layer (EXDEV without redirect_dir), the tree is copied and the original removed.
 */
export const rename =
  (oldPath: string, newPath: string): Applier =>
  async (root) => {
    try {
      await renamePath(at(root, oldPath), at(root, newPath));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      const st = await lstat(at(root, oldPath));
      if (!st.isDirectory()) throw e;
      await mkdir(at(root, newPath));
      await copyTree(at(root, oldPath), at(root, newPath));
      await rm(at(root, oldPath), { recursive: true });
    }
  };

export interface TreeOptions {
  /** Compare modification times of everything but directories (a test that set them all). */
  mtimes?: boolean;
}

function kindOf(st: BigIntStats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

function xattrsOf(path: string): string {
  let names: string[];
  try {
    names = llistxattr(path);
  } catch {
    return '';
  }
  // overlay's own attributes and security labels are the backing store's business.
  return names
    .filter((n) => !n.startsWith('trusted.overlay.') && !n.startsWith('security.'))
    .sort()
    .map((n) => `${n}=${lgetxattr(path, n)?.toString('base64') ?? ''}`)
    .join(';');
}

/** One line per path describing what a user can observe of it; hard-linked names share a group. */
export async function describeTree(root: string, opts: TreeOptions = {}): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const inodes = new Map<string, string[]>();
  const visit = async (rel: string): Promise<void> => {
    const path = rel === '' ? root : join(root, rel);
    const st = await lstat(path, { bigint: true });
    const kind = kindOf(st);
    const parts = [kind, `mode=${(st.mode & 0o7777n).toString(8)}`, `uid=${st.uid}`, `gid=${st.gid}`];
    if (kind === 'file') {
      parts.push(
        `size=${st.size}`,
        `sha256=${createHash('sha256')
          .update(await readFile(path))
          .digest('hex')}`,
      );
    } else if (kind === 'symlink') {
      parts.push(`target=${await readlink(path)}`);
    } else if (kind === 'char' || kind === 'block') {
      const { major, minor } = splitDevice(st.rdev);
      parts.push(`dev=${major}:${minor}`);
    }
    const xattrs = xattrsOf(path);
    if (xattrs) parts.push(`xattrs=${xattrs}`);
    if (opts.mtimes && kind !== 'dir') parts.push(`mtime=${st.mtimeMs}`);
    out.set(rel === '' ? '/' : `/${rel}`, parts.join(' '));
    if (kind !== 'dir') {
      const id = `${st.dev}:${st.ino}`;
      inodes.set(id, [...(inodes.get(id) ?? []), rel === '' ? '/' : `/${rel}`]);
      return;
    }
    for (const name of (await readdir(path)).sort()) await visit(rel === '' ? name : join(rel, name));
  };
  await visit('');
  for (const names of inodes.values()) {
    if (names.length < 2) continue;
    const group = names.sort().join(',');
    for (const n of names) out.set(n, `${out.get(n)} links=${group}`);
  }
  return out;
}

/** Throws, listing the differences, unless the two trees look the same to a user. */
export async function checkDirectoryEqual(
  expected: string,
  actual: string,
  opts: TreeOptions = {},
): Promise<void> {
  const [a, b] = await Promise.all([describeTree(expected, opts), describeTree(actual, opts)]);
  const diffs: string[] = [];
  for (const [path, want] of a) {
    const got = b.get(path);
    if (got === undefined) diffs.push(`${path}: missing (want ${want})`);
    else if (got !== want) diffs.push(`${path}: got ${got}, want ${want}`);
  }
  for (const [path, got] of b) if (!a.has(path)) diffs.push(`${path}: unexpected ${got}`);
  if (diffs.length > 0) {
    const shown = diffs.slice(0, 20).join('\n  ');
    throw new Error(`${actual} differs from ${expected} (${diffs.length} differences):\n  ${shown}`);
  }
}
