import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { createReadStream } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import type { Digest } from '@berth/api';
import { lgetxattr, llistxattr } from '@berth/sys';
import { devNumbers, walkTree } from './walk';

export interface TreeDigestOptions {
  /** Include modification times (seconds.nanoseconds) of everything but the root. Default false. */
  mtimes?: boolean;
  /** Which xattrs to include (all by default). */
  xattrFilter?: (name: string) => boolean;
}

export interface TreeDigest {
  /** sha256 over `entries`, one per line. */
  digest: Digest;
  /** One line per path (the root is `.`): type, mode, owner, content or target, xattrs. */
  entries: string[];
}

function typeOf(st: BigIntStats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

function xattrsOf(path: string, filter?: (name: string) => boolean): string {
  let names: string[];
  try {
    names = llistxattr(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return '';
    throw e;
  }
  return names
    .filter((n) => !filter || filter(n))
    .sort()
    .map((n) => `${n}=${lgetxattr(path, n)?.toString('hex') ?? ''}`)
    .join(',');
}

/**
 * A checksum of a tree: paths, types, modes, owners, file contents, symlink targets,
 * device numbers, hard-link groups and xattrs (mtimes optionally). Two trees with equal
 * digests look the same to a container; `entries` shows where two differ. Used to check
 * that a layer applied by berth and by containerd give the same snapshot.
 */
export async function treeDigest(root: string, opts: TreeDigestOptions = {}): Promise<TreeDigest> {
  const entries: string[] = [];
  const inodes = new Map<bigint, string>();
  const line = async (rel: string, abs: string, st: BigIntStats, isRoot: boolean) => {
    const type = typeOf(st);
    const fields = [rel, type, (Number(st.mode) & 0o7777).toString(8), `${st.uid}:${st.gid}`];
    if (type !== 'dir' && st.nlink > 1n) {
      const first = inodes.get(st.ino);
      if (first !== undefined) fields.push(`hardlink=${first}`);
      else inodes.set(st.ino, rel);
    }
    if (type === 'file') fields.push(`size=${st.size}`, `sha256=${await fileDigest(abs)}`);
    else if (type === 'symlink') fields.push(`target=${JSON.stringify(await readlink(abs))}`);
    else if (type === 'char' || type === 'block') {
      const { major, minor } = devNumbers(st.rdev);
      fields.push(`dev=${major},${minor}`);
    }
    fields.push(`xattrs=${xattrsOf(abs, opts.xattrFilter)}`);
    if (opts.mtimes && !isRoot)
      fields.push(
        `mtime=${st.mtimeNs / 1_000_000_000n}.${String(st.mtimeNs % 1_000_000_000n).padStart(9, '0')}`,
      );
    entries.push(fields.join(' '));
  };
  await line('.', root, await lstat(root, { bigint: true }), true);
  for await (const e of walkTree(root)) await line(e.rel, e.abs, e.st, false);
  const digest = `sha256:${createHash('sha256').update(entries.join('\n')).digest('hex')}` as Digest;
  return { digest, entries };
}
