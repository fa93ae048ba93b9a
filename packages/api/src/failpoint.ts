import { InvalidArgumentError, UnknownError } from './errors';

/**
 * Failpoints, as containerd's pkg/failpoint: named steps of multi-step operations where a
 * test makes the operation fail, stall or crash, to check that it rolls back completely.
 * Every failpoint is off unless set. A failpoint's terms are containerd's syntax:
 *
 *   <count>*<type>[(arg)][-><more terms>]    type: off | error(msg) | panic(msg) | delay(ms)
 *
 * Each evaluation takes the first term with a count left and spends one of it:
 * "1*error(oops)" fails once, "1*off->1*error(oops)" fails the second time, "2*delay(100)"
 * sleeps 100 ms twice. `panic` ends the process at once (SIGKILL), as a crash would.
 *
 * A process reads `BERTH_FAILPOINTS="<name>=<terms>;<name>=<terms>"` from its environment
 * (berthd's shims inherit berthd's). berth's shim also takes containerd's per-container
 * annotations `io.containerd.runtime.v2.shim.failpoint.<Method>` (Create, Start, Delete, ...).
 */

type Term =
  | { type: 'off'; count: number }
  | { type: 'error' | 'panic'; count: number; arg: string }
  | { type: 'delay'; count: number; ms: number };

export const FAILPOINTS_ENV = 'BERTH_FAILPOINTS';
export const SHIM_FAILPOINT_ANNOTATION_PREFIX = 'io.containerd.runtime.v2.shim.failpoint.';

/**
 * What an `error(...)` term throws (Unknown, as containerd's plain fmt.Errorf). Its
 * constructor takes (message, options) as every BerthError, so code that re-wraps errors
 * by their class keeps it one.
 */
export class FailpointError extends UnknownError {
  readonly failpoint: string | undefined;
  constructor(message: string, options?: { cause?: unknown; failpoint?: string }) {
    super(message, options);
    this.failpoint =
      options?.failpoint ?? (options?.cause instanceof FailpointError ? options.cause.failpoint : undefined);
  }
}

function parseCount(text: string, at: number, end: string, what: string): [number, number] {
  let i = at;
  while (i < text.length && text[i]! >= '0' && text[i]! <= '9') i++;
  if (i === at || text[i] !== end) {
    throw new InvalidArgumentError(
      `invalid failpoint terms "${text}": expected ${what} followed by "${end}" at ${at}`,
    );
  }
  return [Number(text.slice(at, i)), i + 1];
}

/** Parses containerd's failpoint terms; InvalidArgument naming the terms when malformed. */
export function parseFailpointTerms(text: string): Term[] {
  const terms: Term[] = [];
  let at = 0;
  for (;;) {
    let count: number;
    [count, at] = parseCount(text, at, '*', 'a count');
    const rest = text.slice(at);
    if (rest.startsWith('off')) {
      terms.push({ type: 'off', count });
      at += 3;
    } else if (rest.startsWith('error(') || rest.startsWith('panic(')) {
      const type = rest.startsWith('error(') ? 'error' : 'panic';
      const close = text.indexOf(')', at + 6);
      if (close <= at + 6)
        throw new InvalidArgumentError(`invalid failpoint terms "${text}": ${type} needs an argument`);
      terms.push({ type, count, arg: text.slice(at + 6, close) });
      at = close + 1;
    } else if (rest.startsWith('delay(')) {
      let ms: number;
      [ms, at] = parseCount(text, at + 6, ')', 'milliseconds');
      terms.push({ type: 'delay', count, ms });
    } else {
      throw new InvalidArgumentError(`invalid failpoint terms "${text}": unknown type at ${at}`);
    }
    if (at === text.length) return terms;
    if (!text.startsWith('->', at)) {
      throw new InvalidArgumentError(`invalid failpoint terms "${text}": expected "->" at ${at}`);
    }
    at += 2;
  }
}

/** One failpoint: its terms, spent as it is evaluated. */
export class Failpoint {
  private readonly terms: Term[];

  constructor(
    readonly name: string,
    terms: string,
  ) {
    this.terms = parseFailpointTerms(terms);
  }

  /** Runs the next term: resolves (off, delay), rejects with FailpointError (error), or ends the process (panic). */
  evaluate(): Promise<void> | undefined {
    const term = this.terms.find((t) => t.count > 0);
    if (term === undefined) return undefined;
    term.count--;
    switch (term.type) {
      case 'off':
        return undefined;
      case 'delay':
        return new Promise((resolve) => setTimeout(resolve, term.ms));
      case 'error':
        return Promise.reject(new FailpointError(term.arg, { failpoint: this.name }));
      case 'panic':
        process.stderr.write(`panic: ${term.arg} (failpoint ${this.name})\n`);
        process.kill(process.pid, 'SIGKILL');
        return new Promise(() => {});
    }
  }

  /** The terms left, in containerd's syntax. */
  marshal(): string {
    return this.terms
      .map((t) =>
        t.type === 'off'
          ? `${t.count}*off`
          : t.type === 'delay'
            ? `${t.count}*delay(${t.ms})`
            : `${t.count}*${t.type}(${t.arg})`,
      )
      .join('->');
  }
}

/** A set of named failpoints. */
export class Failpoints {
  private readonly points = new Map<string, Failpoint>();

  /** `name=terms;name=terms` (BERTH_FAILPOINTS' format); InvalidArgument naming what is malformed. */
  static parse(spec: string): Failpoints {
    const fps = new Failpoints();
    for (const part of spec.split(';')) {
      if (part.trim() === '') continue;
      const eq = part.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`invalid failpoint "${part}": expected <name>=<terms>`);
      fps.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    return fps;
  }

  set(name: string, terms: string): void {
    this.points.set(name, new Failpoint(name, terms));
  }

  get size(): number {
    return this.points.size;
  }

  /** Evaluates the failpoint `name`; undefined (nothing to wait for) when it is not set. */
  at(name: string): Promise<void> | undefined {
    return this.points.get(name)?.evaluate();
  }
}

let fromEnv: Failpoints | undefined;

/**
 * Evaluates the process's failpoint `name` (from BERTH_FAILPOINTS, read on first use).
 * Costs one map lookup when none is set: the steps that call it are on hot paths.
 */
export function failpoint(name: string): Promise<void> | undefined {
  fromEnv ??= Failpoints.parse(process.env[FAILPOINTS_ENV] ?? '');
  return fromEnv.size === 0 ? undefined : fromEnv.at(name);
}
