/**
 * Progress of a pull, push or import, one line per blob: bars redrawn in place on a
 * terminal, plain lines for each change of state otherwise (a log, a pipe, CI). Fed with
 * containerd's transfer Progress events, whether they come from the daemon's Transfer
 * service or from a pull the CLI runs itself.
 */
import type { Writable } from 'node:stream';
import { binarySize } from './image-content';

export interface ProgressEvent {
  event: string;
  name: string;
  progress: number;
  total: number;
}

type State =
  | 'waiting'
  | 'downloading'
  | 'uploading'
  | 'complete'
  | 'exists'
  | 'mounted'
  | 'unpacking'
  | 'unpacked';

interface Item {
  name: string;
  state: State;
  offset: number;
  total: number;
  /** The offset the download started from (a resumed ingest starts past zero). */
  start?: number;
}

/** The state a Progress event's word means, or undefined for a message event. */
function stateOf(event: string): State | undefined {
  switch (event) {
    case 'waiting':
    case 'downloading':
    case 'uploading':
    case 'complete':
    case 'unpacking':
    case 'unpacked':
    case 'mounted':
      return event;
    case 'already exists':
    case 'exists':
      return 'exists';
    default:
      return undefined;
  }
}

/** States worth a line of their own when not on a terminal (a log wants few lines). */
const PLAIN_STATES = new Set<State>([
  'downloading',
  'uploading',
  'complete',
  'exists',
  'mounted',
  'unpacked',
]);

const LABEL: Record<State, string> = {
  waiting: 'waiting',
  downloading: 'downloading',
  uploading: 'uploading',
  complete: 'done',
  exists: 'exists',
  mounted: 'mounted',
  unpacking: 'unpacking',
  unpacked: 'unpacked',
};

/** `layer-sha256:0123456789ab…` -> `layer sha256:0123456789ab` (short enough for a bar). */
function shortName(name: string): string {
  const m = /^(layer|config|manifest|index|unknown)-(?:.*@)?(sha256:[0-9a-f]{12})[0-9a-f]*$/.exec(name);
  return m ? `${m[1]} ${m[2]}` : name;
}

export interface ProgressOptions {
  /** Redraw bars in place (a terminal); plain lines otherwise. */
  tty: boolean;
  /** Columns of the terminal (bars shrink to fit). */
  columns?: number;
  /** Redraw interval on a terminal. */
  intervalMs?: number;
  now?: () => number;
}

export class ProgressDisplay {
  private readonly items = new Map<string, Item>();
  private readonly started: number;
  private drawnLines = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(
    private readonly out: Writable,
    private readonly opts: ProgressOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    if (opts.tty) {
      this.timer = setInterval(() => this.draw(), opts.intervalMs ?? 100);
      this.timer.unref();
    }
  }

  /** A line of its own (resolving, saved, a warning): above the bars on a terminal. */
  message(text: string): void {
    if (this.opts.tty) {
      this.clear();
      this.out.write(`${text}\n`);
      this.draw();
    } else this.out.write(`${text}\n`);
  }

  handle(e: ProgressEvent): void {
    const state = stateOf(e.event);
    if (!state || !e.name) return;
    let item = this.items.get(e.name);
    const isNew = !item;
    if (!item) {
      item = { name: e.name, state, offset: 0, total: e.total };
      this.items.set(e.name, item);
    }
    const before = item.state;
    if (e.total > 0) item.total = e.total;
    if (state === 'downloading' || state === 'uploading') {
      if (item.start === undefined) item.start = e.progress;
      item.offset = e.progress;
    } else if (state === 'complete' || state === 'exists' || state === 'mounted') {
      item.offset = item.total;
    }
    // An unpacked layer stays unpacked; a download report arriving late does not undo it.
    if (!(before === 'unpacked' && state !== 'unpacked')) item.state = state;
    if (!this.opts.tty && (isNew || before !== item.state) && PLAIN_STATES.has(item.state)) this.line(item);
  }

  private line(item: Item): void {
    let text = `${shortName(item.name)}: ${LABEL[item.state]}`;
    if (item.state === 'downloading' && item.start) {
      text += ` (resuming at ${binarySize(item.start)} of ${binarySize(item.total)})`;
    } else if (item.total > 0 && item.state !== 'unpacking' && item.state !== 'unpacked') {
      text += ` ${binarySize(item.total)}`;
    }
    this.out.write(`${text}\n`);
  }

  private bar(item: Item, width: number): string {
    if (width <= 2) return '';
    const inner = width - 2;
    const frac = item.total > 0 ? Math.min(1, item.offset / item.total) : 0;
    const full =
      item.state === 'complete' ||
      item.state === 'exists' ||
      item.state === 'mounted' ||
      item.state.startsWith('unpack');
    const n = full ? inner : Math.floor(frac * inner);
    return `|${'+'.repeat(n)}${'-'.repeat(inner - n)}|`;
  }

  private render(): string[] {
    const cols = this.opts.columns ?? 100;
    const nameWidth = Math.max(...[...this.items.values()].map((i) => shortName(i.name).length), 10);
    const lines: string[] = [];
    let done = 0;
    for (const item of this.items.values()) {
      const sizes =
        item.state === 'downloading' || item.state === 'uploading'
          ? `${binarySize(item.offset)}/${binarySize(item.total)}`
          : binarySize(item.total);
      const head = `${shortName(item.name).padEnd(nameWidth)}  ${LABEL[item.state].padEnd(11)} `;
      const barWidth = Math.max(0, Math.min(40, cols - head.length - sizes.length - 2));
      lines.push(`${head}${this.bar(item, barWidth)} ${sizes}`.slice(0, cols - 1));
      if (item.start !== undefined) done += item.offset - item.start;
    }
    const secs = (this.now() - this.started) / 1000;
    lines.push(`elapsed: ${secs.toFixed(1)} s  transferred: ${binarySize(done)}`);
    return lines;
  }

  private clear(): void {
    if (this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}A\x1b[J`);
    this.drawnLines = 0;
  }

  private draw(): void {
    if (!this.opts.tty || this.items.size === 0) return;
    const lines = this.render();
    this.clear();
    this.out.write(`${lines.join('\n')}\n`);
    this.drawnLines = lines.length;
  }

  /** Stops redrawing; a terminal keeps the final bars. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
  }

  get elapsedMs(): number {
    return this.now() - this.started;
  }
}
