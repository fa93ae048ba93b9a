import { type BigIntStats, constants } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { lgetxattr, llistxattr, lsetxattr, mknod } from '@berth/sys';

/** Linux's dev_t split into major and minor numbers (glibc's gnu_dev_major/minor). */
export function splitDevice(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

// Node takes times as a double of seconds, about 0.25 µs apart for today's dates: aim at the
// middle of the microsecond so the kernel's truncation to nanoseconds keeps the microsecond.
const seconds = (ns: bigint): number => (Number(ns / 1000n) + 0.5) / 1e6;

function copyXattrs(src: string, dst: string): void {
  let names: string[];
  try {
    names = llistxattr(src);
  } catch {
    return; // the filesystem keeps no xattrs
  }
  for (const name of names) {
    // As containerd's native snapshotter: an attribute the target refuses (security.* without
    // privilege, a filesystem without user xattrs on symlinks) is skipped, not fatal.
    try {
      const value = lgetxattr(src, name);
      if (value !== undefined) lsetxattr(dst, name, value);
    } catch {}
  }
}

async function copyMetadata(src: string, dst: string, st: BigIntStats): Promise<void> {
  // chown before chmod (chown clears set-id bits) and before xattrs (it drops security.capability).
  await lchown(dst, Number(st.uid), Number(st.gid));
  if (!st.isSymbolicLink()) await chmod(dst, Number(st.mode & 0o7777n));
  copyXattrs(src, dst);
  await lutimes(dst, seconds(st.atimeNs), seconds(st.mtimeNs));
}

/**
 * Copies the tree at src into the existing directory dst, keeping what a layer is made of:
 * modes (set-id and sticky bits included), owners, extended attributes, symlinks, hard
 * links (as links), device nodes, fifos and sockets, and access/modification times.
 */
export async function copyTree(src: string, dst: string, signal?: AbortSignal): Promise<void> {
  const links = new Map<string, string>();

  const copyEntry = async (from: string, to: string, st: BigIntStats): Promise<void> => {
    signal?.throwIfAborted();
    if (st.isDirectory()) {
      await mkdir(to, { mode: 0o700 });
      await copyChildren(from, to);
      await copyMetadata(from, to, st);
      return;
    }
    if (st.isFile()) {
      const id = `${st.dev}:${st.ino}`;
      if (st.nlink > 1n) {
        const first = links.get(id);
        if (first !== undefined) {
          await link(first, to);
          return;
        }
        links.set(id, to);
      }
      await copyFile(from, to, constants.COPYFILE_FICLONE);
    } else if (st.isSymbolicLink()) {
      await symlink(await readlink(from), to);
    } else {
      // character and block devices, fifos, sockets
      const { major, minor } = splitDevice(st.rdev);
      mknod(to, Number(st.mode), major, minor);
    }
    await copyMetadata(from, to, st);
  };

  const copyChildren = async (from: string, to: string): Promise<void> => {
    for (const name of await readdir(from)) {
      const path = join(from, name);
      await copyEntry(path, join(to, name), await lstat(path, { bigint: true }));
    }
  };

  const root = await lstat(src, { bigint: true });
  await copyChildren(src, dst);
  await copyMetadata(src, dst, root);
}
