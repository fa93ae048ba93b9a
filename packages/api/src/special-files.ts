import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';

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

/**
 * Writes a small file so that readers see either the old or the new content: a temp file
 * next to it, optionally fsynced, then renamed over the target.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  opts: { sync?: boolean; mode?: number } = {},
): Promise<void> {
  // A name of its own per write: two writes of one file at once must not share a temp file.
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await fsp.open(
    tmp,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL,
    opts.mode ?? 0o644,
  );
  try {
    await fh.writeFile(data);
    if (opts.sync) await fh.sync();
  } catch (e) {
    await fh.close();
    await fsp.unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  try {
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    throw e;
  }
}
