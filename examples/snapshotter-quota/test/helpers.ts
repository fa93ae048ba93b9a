import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Mount points at or under dir, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** A root on /var/tmp (a disk, where overlayfs lowers work); removal unmounts what is left. */
export async function tempRoot(prefix: string): Promise<{ root: string; remove: () => Promise<void> }> {
  const root = await mkdtemp(join('/var/tmp', `${prefix}-`));
  return {
    root,
    remove: async () => {
      for (const m of mountsUnder(root)) execFileSync('umount', ['-l', m]);
      await rm(root, { recursive: true, force: true });
    },
  };
}
