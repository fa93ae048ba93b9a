import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotUsage } from '@berth/api';

/**
 * What a tree takes on disk, as du counts it: allocated blocks (512-byte units) and inodes,
 * each inode once however many hard links reach it. The root directory counts too.
 */
export async function diskUsage(root: string, signal?: AbortSignal): Promise<SnapshotUsage> {
  const seen = new Set<string>();
  let size = 0n;
  const visit = async (path: string): Promise<void> => {
    signal?.throwIfAborted();
    const st = await lstat(path, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += st.blocks * 512n;
    }
    if (!st.isDirectory()) return;
    for (const name of await readdir(path)) await visit(join(path, name));
  };
  await visit(root);
  return { size: Number(size), inodes: seen.size };
}
