import { UnavailableError } from '@berth/api';

/** What holds a ref: since when, and the live writer (so status/abort see it). */
export interface RefLock<W> {
  since: Date;
  writer?: W;
}

/**
 * In-process ref locks, shared by every store instance in the process and keyed by the
 * store's root as well as the ref (containerd keys by ref alone, so two stores on
 * different roots would contend; we do not).
 */
const locks = new Map<string, RefLock<unknown>>();

const key = (root: string, ref: string): string => `${root}\0${ref}`;

export function tryLock<W>(root: string, ref: string): RefLock<W> {
  const k = key(root, ref);
  const held = locks.get(k);
  if (held) {
    const ms = Date.now() - held.since.getTime();
    throw new UnavailableError(
      `ref ${ref} locked for ${ms}ms (since ${held.since.toISOString()}): unavailable`,
    );
  }
  const lock: RefLock<W> = { since: new Date() };
  locks.set(k, lock);
  return lock;
}

export function unlock(root: string, ref: string, lock: RefLock<unknown>): void {
  const k = key(root, ref);
  // Only the holder releases: a stale handle must not free somebody else's lock.
  if (locks.get(k) === lock) locks.delete(k);
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
