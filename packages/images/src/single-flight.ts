/**
 * In-process deduplication: concurrent calls with the same key on the same owner (a content
 * store, a snapshotter) share one run. Keys are dropped when the run settles, so a later
 * call starts afresh (and finds the work done).
 */
export class SingleFlight {
  private readonly flights = new WeakMap<object, Map<string, Promise<unknown>>>();

  /** Runs `fn`, or joins the run already in flight; `shared` tells which. */
  async run<T>(owner: object, key: string, fn: () => Promise<T>): Promise<{ value: T; shared: boolean }> {
    let m = this.flights.get(owner);
    if (!m) {
      m = new Map();
      this.flights.set(owner, m);
    }
    const running = m.get(key) as Promise<T> | undefined;
    if (running) return { value: await running, shared: true };
    const p = fn();
    m.set(key, p);
    try {
      return { value: await p, shared: false };
    } finally {
      if (m.get(key) === p) m.delete(key);
    }
  }

  inFlight(owner: object, key: string): boolean {
    return this.flights.get(owner)?.has(key) ?? false;
  }
}

/** The process-wide flights pulls share (downloads keyed by store+digest, unpacks by snapshotter+chainID). */
export const flights = new SingleFlight();

/** A counting semaphore (download concurrency). */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`limit must be at least 1, got ${limit}`);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
