import * as fs from 'node:fs';

/**
 * Stat and remove FIFOs and unix sockets without breaking `require()`.
 *
 * Node 20's `fs.realpathSync`, which `require()` uses to follow pnpm's symlinks, reads the
 * process-wide buffer that the last plain `(l)stat` filled, and stops resolving a cached
 * path as soon as that buffer describes a FIFO or a socket (nodejs/node#51142). One stat
 * of a stale socket (`fs.rm` does one first) was enough for the next lazy `require` of a
 * dependency of a dependency to fail with "Cannot find module" — berthd's first restart
 * after a crash did exactly that. Stats with `{ bigint: true }` fill a separate buffer,
 * and `unlink` stats nothing, so these helpers never touch the one realpath reads.
 */

/** lstat with bigint results; undefined when nothing is there. */
export function lstatQuiet(path: string): fs.BigIntStats | undefined {
  return fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
}

/** True when path is a FIFO (not following a symlink); false when missing or anything else. */
export function isFifoFile(path: string): boolean {
  try {
    return lstatQuiet(path)?.isFIFO() ?? false;
  } catch {
    return false;
  }
}

/** True when path is a unix socket file (not following a symlink). */
export function isSocketFile(path: string): boolean {
  try {
    return lstatQuiet(path)?.isSocket() ?? false;
  } catch {
    return false;
  }
}

/** Removes a file that may be a FIFO or socket; a missing file is not an error. */
export function unlinkQuiet(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * `fs.rm(path, { recursive: true, force: true })` for a tree that may hold FIFOs or
 * sockets (bundles, console-socket directories): rm stats every entry, so the stat buffer
 * is refilled afterwards with a directory's stat.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await fs.promises.rm(path, { recursive: true, force: true });
  } finally {
    forgetSpecialStat();
  }
}

/** The synchronous removeTree. */
export function removeTreeSync(path: string): void {
  try {
    fs.rmSync(path, { recursive: true, force: true });
  } finally {
    forgetSpecialStat();
  }
}

/** Refills the plain stat buffer with a directory's stat (see the top of this file). */
export function forgetSpecialStat(): void {
  try {
    fs.statSync('/');
  } catch {
    // '/' always exists; nothing else to do
  }
}
