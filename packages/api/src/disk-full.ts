import {
  closeSync,
  fsyncSync,
  openSync,
  renameSync,
  statfsSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { isNoSpaceErrno, NoSpaceError } from './errors';

const CHUNK = 1 << 20;

/**
 * A file of `size` bytes, written out (not sparse), kept next to a database so that a full
 * disk still leaves the database room to delete: SQLite needs free blocks even to remove a
 * row (WAL frames, then the checkpoint into the main file). Released when a write fails for
 * lack of space, made again once there is room.
 *
 * The blocks are written with a non-zero pattern, so a file system that stores zeros
 * sparsely still allocates them (one that compresses or deduplicates may not: there the
 * reserve is only a hint).
 */
export class SpaceReserve {
  constructor(
    readonly path: string,
    readonly size: number,
  ) {}

  /** Whether the reserve is on disk, whole. */
  get held(): boolean {
    try {
      return statSync(this.path).size === this.size;
    } catch {
      return false;
    }
  }

  /**
   * Makes the reserve when it is missing and the file system has at least twice its size
   * free (it never takes the last free blocks itself). Never throws: false when not held.
   */
  ensure(): boolean {
    if (this.held) return true;
    try {
      const st = statfsSync(dirname(this.path));
      if (st.bavail * st.bsize < 2 * this.size) return false;
    } catch {
      return false;
    }
    const tmp = `${this.path}.tmp`;
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'w', 0o600);
      const chunk = Buffer.alloc(Math.min(CHUNK, this.size), 0xa5);
      for (let off = 0; off < this.size; off += chunk.length) {
        writeSync(fd, chunk, 0, Math.min(chunk.length, this.size - off), off);
      }
      // Delayed allocation reserves at write time; the sync makes the blocks real.
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, this.path);
      return true;
    } catch {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {}
      return false;
    }
  }

  /** Deletes the reserve; true when there was one to free. */
  release(): boolean {
    try {
      unlinkSync(`${this.path}.tmp`);
    } catch {}
    try {
      unlinkSync(this.path);
      return true;
    } catch {
      return false;
    }
  }
}

/** What `retryOnFullDisk` needs to know about the database it writes to. */
export interface FullDiskRetry {
  /** The database file, named in the error. */
  path: string;
  /** Freed before the last attempt. */
  reserve?: SpaceReserve;
  /**
   * Asked after the first failure: may this write spend the reserve? Say yes only for
   * writes that free space (deletes, garbage collection), so a full disk keeps its
   * reserve for them. Default yes.
   */
  mayUseReserve?(): boolean;
  /**
   * Moves the WAL into the main file and restarts it (`PRAGMA wal_checkpoint(RESTART)`),
   * so the next transaction writes over the WAL's start instead of growing it.
   */
  checkpoint(): void;
  /** Told when the reserve was spent (for a log line). */
  onReserveReleased?(): void;
}

/**
 * Runs `fn`, a whole synchronous write transaction that may run again. When it fails for
 * lack of space it is retried after a checkpoint (the WAL's own blocks are then reused),
 * then, if `mayUseReserve`, once more after releasing the reserve. Still full: a NoSpaceError naming the
 * database file and `what`.
 */
export function retryOnFullDisk<T>(what: string, fn: () => T, opts: FullDiskRetry): T {
  let last: unknown;
  try {
    return fn();
  } catch (e) {
    if (!isNoSpaceErrno(e)) throw e;
    last = e;
  }
  const steps: (() => void)[] = [() => opts.checkpoint()];
  if (opts.reserve?.held && (opts.mayUseReserve?.() ?? true)) {
    steps.push(() => {
      if (opts.reserve?.release()) opts.onReserveReleased?.();
      opts.checkpoint();
    });
  }
  for (const step of steps) {
    try {
      step();
    } catch {
      // A checkpoint that cannot finish for lack of space is what the next step is for.
    }
    try {
      return fn();
    } catch (e) {
      if (!isNoSpaceErrno(e)) throw e;
      last = e;
    }
  }
  throw new NoSpaceError(
    opts.path,
    `${what}: write ${opts.path}: no space left on device (${(last as Error).message})`,
    { cause: last },
  );
}
