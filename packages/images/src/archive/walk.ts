import type { BigIntStats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';

export interface WalkEntry {
  /** Path below the root, `/`-separated, no leading slash. */
  rel: string;
  abs: string;
  st: BigIntStats;
}

/** Byte-order-ish name comparison used by every walk (and by merges of two walks). */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Orders paths as a depth-first walk with sorted names visits them: `/` sorts before any
 * other character (continuity's directoryCompare), so `a/b` comes before `a-b`.
 */
export function comparePaths(a: string, b: string): number {
  return compareNames(a.replaceAll('/', '\0'), b.replaceAll('/', '\0'));
}

/** Depth-first walk with sorted names and lstat (nanosecond times): the root itself is not yielded. */
export async function* walkTree(root: string, signal?: AbortSignal): AsyncGenerator<WalkEntry> {
  async function* walk(dir: string, prefix: string): AsyncGenerator<WalkEntry> {
    const names = (await readdir(dir)).sort(compareNames);
    for (const name of names) {
      signal?.throwIfAborted();
      const abs = `${dir}/${name}`;
      const rel = prefix ? `${prefix}/${name}` : name;
      let st: BigIntStats;
      try {
        st = await lstat(abs, { bigint: true });
      } catch (e) {
        // Gone since readdir (a live tree): nothing to report.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      yield { rel, abs, st };
      if (st.isDirectory()) yield* walk(abs, rel);
    }
  }
  yield* walk(root, '');
}

/** Linux major/minor from st_rdev (glibc's gnu_dev_major/minor). */
export function devNumbers(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}
