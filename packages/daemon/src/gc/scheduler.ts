import { InvalidArgumentError, UnavailableError } from '@berth/api';
import { type Logger, nullLogger } from '../log';

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration ("100ms", "1m30s", "0") into milliseconds. */
export function parseDuration(text: string): number {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let ms = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new InvalidArgumentError(`invalid duration "${text}"`);
    ms += Number(m[1]) * UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (text === '') throw new InvalidArgumentError('invalid duration ""');
  return ms;
}

/** Milliseconds as Go prints a time.Duration: "0s", "100ms", "1.5s", "2m0s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const ns = Math.round(ms * 1e6);
  if (ns < 1000) return `${ns}ns`;
  if (ns < 1e6) return `${trim(ns / 1e3)}µs`;
  if (ns < 1e9) return `${trim(ns / 1e6)}ms`;
  let s = ns / 1e9;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const sec = `${trim(s)}s`;
  if (h > 0) return `${h}h${m}m${sec}`;
  if (m > 0) return `${m}m${sec}`;
  return sec;
}

const trim = (n: number): string => String(Number(n.toFixed(9)));

/** Time and timers, a fake one in tests. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls fn once after ms; the timer must not keep the process alive. */
  setTimer(fn: () => void, ms: number): { clear(): void };
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { clear: () => clearTimeout(t) };
  },
};

/** What the scheduler collects with: the metadata database. */
export interface Collector<R extends CollectReport = CollectReport> {
  /** Registers fn to hear of every committed write (dirty: deleted since the last run). */
  onMutation(fn: (dirty: boolean) => void): () => void;
  collectGarbage(): Promise<R>;
}

export interface CollectReport {
  /** The metadata phase of the run, what the pause threshold paces by. */
  metadataMs: number;
}

/** containerd's `[plugins."io.containerd.gc.v1.scheduler"]`, durations in milliseconds. */
export interface SchedulerPolicy {
  /**
   * At most this share of real time in collections: after each run the next is at least
   * (average pause / threshold − average pause) away. 0 < p ≤ 0.5; 0 disables it (1 s).
   */
  pauseThreshold: number;
  /** This many deletions since the last run schedule one at once; 0: deletions wait for the next tick. */
  deletionThreshold: number;
  /** This many writes since the last run make the next tick collect; 0: writes never do. */
  mutationThreshold: number;
  /** How far off a collection asked for (trigger or threshold) is scheduled. */
  scheduleDelayMs: number;
  /** The first collection, after start; it sets the base for the pause threshold. */
  startupDelayMs: number;
}

/** containerd 1.6's defaults. */
export const DEFAULT_POLICY: SchedulerPolicy = {
  pauseThreshold: 0.02,
  deletionThreshold: 0,
  mutationThreshold: 100,
  scheduleDelayMs: 0,
  startupDelayMs: 100,
};

export interface SchedulerOptions extends Partial<SchedulerPolicy> {
  clock?: Clock;
  log?: Logger;
}

interface Waiter<R> {
  resolve(report: R): void;
  reject(err: Error): void;
}

/**
 * The gc.v1 scheduler, containerd's algorithm: the metadata database reports every write
 * (mutation) and whether something was deleted since the last collection (dirty); a tick,
 * paced by the pause threshold, collects only when there were deletions, enough
 * mutations, or an explicit request (scheduleAndWait). So content committed with no
 * lease and no gc.root lives until something else is deleted, as on containerd.
 */
export class GCScheduler<R extends CollectReport = CollectReport> {
  private readonly policy: SchedulerPolicy;
  private readonly clock: Clock;
  private readonly log: Logger;
  private timer: { clear(): void } | undefined;
  /** When the timer fires; undefined when nothing is scheduled. */
  private next: number | undefined;
  /** When the last collection ended; undefined before the first. */
  private last: number | undefined;
  /** The time between ticks, from the pause threshold (containerd starts at 1 s). */
  private interval = 1000;
  private gcTime = 0;
  private collections = 0;
  private triggered = false;
  private deletions = 0;
  private mutations = 0;
  private running = false;
  /** Events seen during a collection, counted once it ends (they may postdate its mark). */
  private readonly queued: { mutation: boolean; dirty: boolean }[] = [];
  private waiters: Waiter<R>[] = [];
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly collector: Collector<R>,
    opts: SchedulerOptions = {},
  ) {
    const d = DEFAULT_POLICY;
    this.policy = {
      pauseThreshold: opts.pauseThreshold ?? d.pauseThreshold,
      deletionThreshold: opts.deletionThreshold ?? d.deletionThreshold,
      mutationThreshold: opts.mutationThreshold ?? d.mutationThreshold,
      scheduleDelayMs: opts.scheduleDelayMs ?? d.scheduleDelayMs,
      startupDelayMs: opts.startupDelayMs ?? d.startupDelayMs,
    };
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? nullLogger;
  }

  /** Subscribes to the collector's mutations and schedules the start-up collection. */
  start(): void {
    if (this.closed || this.unsubscribe) return;
    this.unsubscribe = this.collector.onMutation((dirty) => this.event(true, dirty));
    if (this.policy.startupDelayMs > 0) this.schedule(this.policy.startupDelayMs);
  }

  /** Asks for a collection (after schedule_delay) and resolves with its report. */
  scheduleAndWait(): Promise<R> {
    if (this.closed) return Promise.reject(new UnavailableError('gc scheduler is closed'));
    const done = new Promise<R>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.event(false, false);
    return done;
  }

  /** Whether a tick is scheduled, and in how many milliseconds (for tests and debugging). */
  get scheduledIn(): number | undefined {
    return this.next === undefined ? undefined : this.next - this.clock.now();
  }

  /** Stops scheduling; callers still waiting are told the scheduler closed. */
  close(): void {
    this.closed = true;
    this.unsubscribe?.();
    this.timer?.clear();
    this.timer = undefined;
    this.next = undefined;
    const err = new UnavailableError('gc scheduler is closed');
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private event(mutation: boolean, dirty: boolean): void {
    if (this.closed) return;
    if (this.running) {
      this.queued.push({ mutation, dirty });
      return;
    }
    const p = this.policy;
    if (dirty) this.deletions++;
    if (mutation) this.mutations++;
    else this.triggered = true;

    const now =
      this.triggered ||
      (p.deletionThreshold > 0 && this.deletions >= p.deletionThreshold) ||
      (this.next === undefined &&
        ((p.deletionThreshold === 0 && this.deletions > 0) ||
          (p.mutationThreshold > 0 && this.mutations >= p.mutationThreshold)));
    // Not when a tick comes sooner than the delay anyway.
    if (now && (this.next === undefined || this.next > this.clock.now() + p.scheduleDelayMs)) {
      this.schedule(p.scheduleDelayMs);
    }
  }

  private schedule(ms: number): void {
    this.timer?.clear();
    this.next = this.clock.now() + ms;
    const timer = this.clock.setTimer(() => {
      if (this.timer !== timer) return;
      this.timer = undefined;
      this.tick();
    }, ms);
    this.timer = timer;
  }

  private tick(): void {
    const p = this.policy;
    // Nothing deleted, few writes, nobody asking: look again after another interval.
    const idle =
      !this.triggered &&
      this.last !== undefined &&
      this.deletions === 0 &&
      (p.mutationThreshold === 0 || this.mutations < p.mutationThreshold);
    if (idle) {
      this.schedule(this.interval);
      return;
    }
    void this.collect();
  }

  private async collect(): Promise<void> {
    this.running = true;
    const scheduledFor = this.next ?? this.clock.now();
    this.next = undefined;
    // Who asks from here on waits for the next run: this one may have marked already.
    const waiters = this.waiters.splice(0);
    try {
      const report = await this.collector.collectGarbage();
      const ended = this.clock.now();
      if (this.log.enabled('debug'))
        this.log.with({ d: formatDuration(report.metadataMs) }).debug('garbage collected');
      this.gcTime += report.metadataMs;
      this.collections++;
      this.triggered = false;
      this.deletions = 0;
      this.mutations = 0;
      const pt = this.policy.pauseThreshold;
      if (pt > 0) {
        const avg = this.gcTime / this.collections;
        this.interval = avg / pt - avg;
      }
      this.last = ended;
      this.running = false;
      if (!this.closed) this.schedule(this.interval);
      for (const w of waiters) w.resolve(report);
    } catch (err) {
      const ended = this.clock.now();
      this.log.with({ error: (err as Error)?.message ?? String(err) }).error('garbage collection failed');
      // Retry after the same gap as this run had, plus a second (containerd's back-off).
      const gap = this.last === undefined ? this.interval : scheduledFor - this.last;
      this.last = ended;
      this.running = false;
      if (!this.closed) this.schedule(Math.max(0, gap) + 1000);
      for (const w of waiters) w.reject(err as Error);
    }
    for (const e of this.queued.splice(0)) this.event(e.mutation, e.dirty);
  }
}
