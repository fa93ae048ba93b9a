import { gcSchedulerPlugin, policyOf } from '../src/gc/plugin';
import type { Clock, Collector } from '../src/gc/scheduler';
import { formatDuration, GCScheduler, parseDuration } from '../src/gc/scheduler';

/** A clock whose time moves only when the test says so; timers fire in order. */
class FakeClock implements Clock {
  private t = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): { clear(): void } {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return {
      clear: () => {
        timer.live = false;
      },
    };
  }

  /** Moves time forward by ms, firing due timers (and letting their promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await flush();
      this.timers = this.timers.filter((x) => x.live);
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.live = false;
      this.t = due.at;
      due.fn();
    }
    this.t = end;
    await flush();
  }
}

const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

interface Report {
  metadataMs: number;
  run: number;
}

/** The metadata database as the scheduler sees it: writes to report, collections to count. */
class FakeCollector implements Collector<Report> {
  runs = 0;
  /** What a run reports as its metadata phase. */
  costMs = 10;
  /** Set to make the next runs fail. */
  failure: Error | undefined;
  /** Set to hold runs until released. */
  gate: Promise<void> | undefined;
  private listeners: ((dirty: boolean) => void)[] = [];

  onMutation(fn: (dirty: boolean) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /** A committed write; dirty once something was deleted since the last run, as the DB reports. */
  write(dirty = false): void {
    for (const l of this.listeners) l(dirty);
  }

  async collectGarbage(): Promise<Report> {
    await this.gate;
    if (this.failure) throw this.failure;
    this.runs++;
    return { metadataMs: this.costMs, run: this.runs };
  }
}

function setup(opts: ConstructorParameters<typeof GCScheduler>[1] = {}) {
  const clock = new FakeClock();
  const c = new FakeCollector();
  const s = new GCScheduler<Report>(c, { clock, ...opts });
  s.start();
  return { clock, c, s };
}

// With containerd's defaults and a 10 ms metadata phase, ticks are 10/0.02 - 10 = 490 ms apart.
const TICK = 490;

describe('GCScheduler (containerd defaults, fake clock)', () => {
  test('collects once after the start-up delay, then idles: writes alone collect nothing', async () => {
    const { clock, c } = setup();
    await clock.advance(99);
    expect(c.runs).toBe(0);
    await clock.advance(1);
    expect(c.runs).toBe(1);
    // ctr namespaces create/rm, ctr content ingest: writes, no deletion.
    for (let i = 0; i < 99; i++) c.write(false);
    await clock.advance(60_000);
    expect(c.runs).toBe(1);
  });

  test('a deletion is collected at the next tick, not at once', async () => {
    const { clock, c, s } = setup();
    await clock.advance(100);
    await clock.advance(200);
    c.write(true);
    expect(s.scheduledIn).toBe(TICK - 200);
    await clock.advance(TICK - 201);
    expect(c.runs).toBe(1);
    await clock.advance(1);
    expect(c.runs).toBe(2);
    // Counted and reset: the next ticks idle again.
    await clock.advance(10 * TICK);
    expect(c.runs).toBe(2);
  });

  test('the mutation threshold makes the next tick collect', async () => {
    const { clock, c } = setup();
    await clock.advance(100);
    for (let i = 0; i < 100; i++) c.write(false);
    expect(c.runs).toBe(1);
    await clock.advance(TICK);
    expect(c.runs).toBe(2);
  });

  test('scheduleAndWait collects at once and resolves with that run', async () => {
    const { clock, c, s } = setup();
    await clock.advance(100);
    let report: Report | undefined;
    void s.scheduleAndWait().then((r) => {
      report = r;
    });
    await clock.advance(0);
    expect(report).toEqual({ metadataMs: 10, run: 2 });
    expect(c.runs).toBe(2);
  });

  test('the pause threshold spaces ticks by the average metadata phase', async () => {
    const { clock, c, s } = setup();
    c.costMs = 10;
    await clock.advance(100);
    expect(s.scheduledIn).toBe(490);
    c.costMs = 30;
    const second = s.scheduleAndWait();
    await clock.advance(0);
    expect((await second).run).toBe(2);
    // Average (10 + 30) / 2 = 20 ms: 20 / 0.02 - 20 = 980 ms.
    expect(s.scheduledIn).toBe(980);
  });
});

describe('GCScheduler policy knobs', () => {
  test('deletion_threshold: that many deletions collect after schedule_delay', async () => {
    const { clock, c } = setup({ deletionThreshold: 3, scheduleDelayMs: 50 });
    await clock.advance(100);
    c.write(true);
    c.write(true);
    await clock.advance(100);
    expect(c.runs).toBe(1);
    c.write(true);
    await clock.advance(49);
    expect(c.runs).toBe(1);
    await clock.advance(1);
    expect(c.runs).toBe(2);
  });

  test('schedule_delay delays a requested collection, unless a tick comes sooner', async () => {
    const { clock, c, s } = setup({ scheduleDelayMs: 300 });
    await clock.advance(100);
    void s.scheduleAndWait();
    await clock.advance(299);
    expect(c.runs).toBe(1);
    await clock.advance(1);
    expect(c.runs).toBe(2);
    // The next tick is 490 ms off; 300 ms from 400 ms in is sooner, so it is moved up.
    await clock.advance(300);
    void s.scheduleAndWait();
    expect(s.scheduledIn).toBe(190);
    await clock.advance(190);
    expect(c.runs).toBe(3);
  });

  test('with no start-up collection, the first deletion or the mutation threshold collects at once', async () => {
    const a = setup({ startupDelayMs: 0 });
    await a.clock.advance(10_000);
    expect(a.c.runs).toBe(0);
    a.c.write(true);
    await a.clock.advance(0);
    expect(a.c.runs).toBe(1);

    const b = setup({ startupDelayMs: 0, mutationThreshold: 5 });
    for (let i = 0; i < 4; i++) b.c.write(false);
    await b.clock.advance(10_000);
    expect(b.c.runs).toBe(0);
    b.c.write(false);
    await b.clock.advance(0);
    expect(b.c.runs).toBe(1);
  });

  test('mutation_threshold 0: writes never collect, deletions still do', async () => {
    const { clock, c } = setup({ mutationThreshold: 0 });
    await clock.advance(100);
    for (let i = 0; i < 1000; i++) c.write(false);
    await clock.advance(5 * TICK);
    expect(c.runs).toBe(1);
    c.write(true);
    await clock.advance(TICK);
    expect(c.runs).toBe(2);
  });

  test('pause_threshold 0: ticks every second', async () => {
    const { clock, c, s } = setup({ pauseThreshold: 0 });
    await clock.advance(100);
    expect(s.scheduledIn).toBe(1000);
    c.write(true);
    await clock.advance(999);
    expect(c.runs).toBe(1);
    await clock.advance(1);
    expect(c.runs).toBe(2);
  });
});

describe('GCScheduler failures and lifecycle', () => {
  test('a failed run rejects its waiters, keeps the counts and retries a second later', async () => {
    const { clock, c, s } = setup();
    await clock.advance(100);
    c.failure = new Error('backing walk broke');
    c.write(true);
    const waited = s.scheduleAndWait();
    const outcome = waited.then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    await clock.advance(0);
    expect(await outcome).toBe('backing walk broke');
    expect(c.runs).toBe(1);
    c.failure = undefined;
    // The run was due right after the last one ended (gap 0): retried 1 s later.
    await clock.advance(999);
    expect(c.runs).toBe(1);
    await clock.advance(1);
    expect(c.runs).toBe(2);
  });

  test('a deletion during a run counts for the next tick; a request during a run gets the next run', async () => {
    const { clock, c, s } = setup();
    let release!: () => void;
    c.gate = new Promise((r) => {
      release = r;
    });
    await clock.advance(100);
    expect(c.runs).toBe(0);
    c.write(true);
    c.gate = undefined;
    release();
    await clock.advance(0);
    expect(c.runs).toBe(1);
    // The deletion may postdate the run's mark: the next tick collects.
    await clock.advance(TICK);
    expect(c.runs).toBe(2);

    c.gate = new Promise((r) => {
      release = r;
    });
    const first = s.scheduleAndWait();
    await clock.advance(0);
    const second = s.scheduleAndWait();
    c.gate = undefined;
    release();
    await clock.advance(0);
    expect((await first).run).toBe(3);
    expect((await second).run).toBe(4);
  });

  test('close stops ticks and rejects callers still waiting', async () => {
    const { clock, c, s } = setup({ scheduleDelayMs: 1000 });
    await clock.advance(100);
    const waited = s.scheduleAndWait().then(
      () => 'resolved',
      (e: { code?: string }) => e.code,
    );
    s.close();
    expect(await waited).toBe('ERR_UNAVAILABLE');
    c.write(true);
    await clock.advance(60_000);
    expect(c.runs).toBe(1);
    await expect(s.scheduleAndWait()).rejects.toMatchObject({ code: 'ERR_UNAVAILABLE' });
  });
});

describe('gc.v1 scheduler config', () => {
  const defaults = gcSchedulerPlugin.config!;

  test("defaults are containerd 1.6's", () => {
    expect(defaults).toEqual({
      pause_threshold: 0.02,
      deletion_threshold: 0,
      mutation_threshold: 100,
      schedule_delay: '0s',
      startup_delay: '100ms',
    });
    expect(policyOf(defaults).policy).toEqual({
      pauseThreshold: 0.02,
      deletionThreshold: 0,
      mutationThreshold: 100,
      scheduleDelayMs: 0,
      startupDelayMs: 100,
    });
  });

  test('caps pause_threshold at 0.5 with a warning, as containerd', () => {
    const { policy, warnings } = policyOf({ ...defaults, pause_threshold: 0.9 });
    expect(policy.pauseThreshold).toBe(0.5);
    expect(warnings).toEqual([expect.stringContaining('pause_threshold = 0.9')]);
  });

  test.each([
    [{ pause_threshold: -0.1 }, 'pause_threshold = -0.1'],
    [{ deletion_threshold: -1 }, 'deletion_threshold = -1'],
    [{ mutation_threshold: 2.5 }, 'mutation_threshold = 2.5'],
    [{ schedule_delay: 'soon' }, 'schedule_delay = "soon"'],
    [{ startup_delay: '-1s' }, 'startup_delay = "-1s"'],
  ])('refuses %j with InvalidArgument naming the key', (bad, named) => {
    expect(() => policyOf({ ...defaults, ...bad })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining(named) }),
    );
  });

  test('durations read and print as Go does', () => {
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('250us')).toBe(0.25);
    for (const [ms, text] of [
      [0, '0s'],
      [100, '100ms'],
      [1500, '1.5s'],
      [90_000, '1m30s'],
      [3_600_000, '1h0m0s'],
      [0.25, '250µs'],
    ] as const) {
      expect(formatDuration(ms)).toBe(text);
      expect(parseDuration(text)).toBe(ms);
    }
  });
});
