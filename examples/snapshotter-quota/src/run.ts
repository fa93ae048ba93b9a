import { execFile } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SnapshotUsage } from '@berth/api';

/**
 * Runs a system tool (mount, umount, cp). This package depends on @berth/api alone, so it
 * mounts through util-linux rather than an addon; stderr becomes the error's message.
 */
export function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve();
    });
  });
}

/** Whether dir is a mount point: its device differs from its parent's. */
export async function isMountPoint(dir: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([lstat(dir), lstat(dirname(dir))]);
    return a.dev !== b.dev;
  } catch {
    return false;
  }
}

/** Allocated bytes (512-byte blocks) and inodes of a tree, each inode once, as du counts. */
export async function diskUsage(root: string): Promise<SnapshotUsage> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += st.blocks * 512;
    }
    if (st.isDirectory()) for (const name of await readdir(path)) await visit(join(path, name));
  };
  await visit(root);
  return { size, inodes: seen.size };
}
