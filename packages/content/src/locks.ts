import { UnavailableError } from '@berth/api';

/** What holds a ref: since when, and the live writer (so status/abort see it). */
export interface RefLock<W> {
  since: Date;
  writer?: W;
  /**
   * The previous holder's unfinished file work (a close frees the ref before its last
   * writes land): the new holder waits for it before touching the ingest.
   */
  settled?: Promise<void>;
}

/**
 * In-process ref locks, shared by every store instance in the process and keyed by the
 * store's root as well as the ref (containerd keys by ref alone, so two stores on
 * different roots would contend; we do not).
 */
const locks = new Map<string, RefLock<unknown>>();

/** Per ref, the file work of a holder that has already let go (see unlock's `pending`). */
const settling = new Map<string, Promise<void>>();

const key = (root: string, ref: string): string => `${root}\0${ref}`;

const ignore = (): void => {};

export function tryLock<W>(root: string, ref: string): RefLock<W> {
  const k = key(root, ref);
  const held = locks.get(k);
  if (held) {
    const ms = Date.now() - held.since.getTime();
    throw new UnavailableError(
      `ref ${ref} locked for ${ms}ms (since ${held.since.toISOString()}): unavailable`,
    );
  }
  const lock: RefLock<W> = { since: new Date(), settled: settling.get(k) };
  locks.set(k, lock);
  return lock;
}

/**
 * Frees the ref. With `pending`, the holder lets go before its last file work is done
 * (containerd's client closes a writer and opens the next one on the ref at once, so the
 * ref must be free the moment the close is asked for): whoever takes or reads the ref next
 * waits for `pending` first (RefLock.settled, settled()). Its failure is the holder's own.
 */
export function unlock(root: string, ref: string, lock: RefLock<unknown>, pending?: Promise<unknown>): void {
  const k = key(root, ref);
  // Only the holder releases: a stale handle must not free somebody else's lock.
  if (locks.get(k) !== lock) return;
  locks.delete(k);
  if (!pending) return;
  // A later holder's pending work starts only after this one's (it waited on settled).
  const done = pending.then(ignore, ignore);
  settling.set(k, done);
  void done.then(() => {
    if (settling.get(k) === done) settling.delete(k);
  });
}

/** The file work a released holder still has in flight on the ref, if any. */
export function settled(root: string, ref: string): Promise<void> | undefined {
  return settling.get(key(root, ref));
}

export function lockHolder<W>(root: string, ref: string): RefLock<W> | undefined {
  return locks.get(key(root, ref)) as RefLock<W> | undefined;
}

/**
 * Per-digest queues, process-wide like the ref locks: commit, update and delete of one
 * digest run one after another even across store instances on the same root.
 */
const queues = new Map<string, Promise<unknown>>();

export function serialize<T>(root: string, digest: string, fn: () => Promise<T>): Promise<T> {
  const k = key(root, digest);
  const p = (queues.get(k) ?? Promise.resolve()).then(fn);
  const tail = p.catch(() => {});
  queues.set(k, tail);
  void tail.then(() => {
    if (queues.get(k) === tail) queues.delete(k);
  });
  return p;
}
