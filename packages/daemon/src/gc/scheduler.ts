import { InvalidArgumentError } from '@berth/api';
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

/** What the scheduler collects with: the metadata database. */
export interface Collector {
  collectGarbage(): Promise<unknown>;
}

export interface SchedulerOptions {
  /** Delay of the first collection after start (containerd's startup_delay). */
  startupDelayMs: number;
  log?: Logger;
}

/**
 * The gc.v1 scheduler. The metadata database schedules a collection itself after each
 * deletion; this plugin adds the collection at start-up and `scheduleAndWait` for callers
 * that must see the garbage gone (a synchronous lease delete).
 */
export class GCScheduler {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly log: Logger;

  constructor(
    private readonly collector: Collector,
    private readonly opts: SchedulerOptions,
  ) {
    this.log = opts.log ?? nullLogger;
  }

  start(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.scheduleAndWait().catch((err) =>
        this.log.with({ error: (err as Error).message }).warn('startup garbage collection failed'),
      );
    }, this.opts.startupDelayMs);
    this.timer.unref();
  }

  /** Runs a collection now and resolves with its report. */
  async scheduleAndWait(): Promise<unknown> {
    if (this.closed) throw new InvalidArgumentError('gc scheduler is closed');
    const report = await this.collector.collectGarbage();
    if (this.log.enabled('debug')) this.log.debug('garbage collected');
    return report;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
