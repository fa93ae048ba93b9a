/**
 * What run, tasks start, tasks exec and tasks attach share: a process's IO through FIFOs,
 * the caller's terminal, signals forwarded while waiting, and the exit status (ctr's
 * tasks.NewTask, HandleConsoleResize, ForwardAllSignals).
 */
import { constants } from 'node:os';
import type { Context } from '@berth/api';
import type { Client } from '@berth/client';
import type { Globals } from './runtime';

type ClientModule = typeof import('@berth/client');
type ProcessIo = import('@berth/client').ProcessIo;
type Console = import('@berth/client').Console;

const clientModule = (): ClientModule => require('@berth/client') as ClientModule;

/** How long output may still drain after the process was deleted (the shim closed its end by then). */
const DRAIN_MS = 2000;

export interface IoChoice {
  /** `-t`: the process gets a terminal; the caller's own becomes raw while attached. */
  tty: boolean;
  /** Copy nothing: the process runs with /dev/null. */
  nullIo?: boolean;
  /** Only hold the FIFOs open while the process starts (detached runs: attach later). */
  detach?: boolean;
  fifoDir?: string;
}

/** The IO set up for a new process: what to pass to Create/Exec, and the copying behind it. */
export interface ProcessStdio {
  config: { stdin: string; stdout: string; stderr: string; terminal: boolean };
  io?: ProcessIo;
  console?: Console;
  /**
   * Call once the process has started: when our stdin has ended (now, or later) its FIFO is
   * closed and then `close` (Tasks.CloseIO) runs, so the process reads all of it, then EOF.
   */
  onStdinEnd(close: () => void): void;
  /** Restores the terminal and stops copying; removes the FIFOs unless `keepFifos`. */
  release(opts?: { keepFifos?: boolean }): Promise<void>;
}

/**
 * Makes FIFOs for process `id` and starts copying between them and the CLI's stdio; a
 * detached process only has its FIFOs held open until release (nothing read or written).
 */
export async function openStdio(g: Globals, id: string, choice: IoChoice): Promise<ProcessStdio> {
  const { newFifoSet, holdFifos, removeFifoSet, DEFAULT_FIFO_DIR } = clientModule();
  if (choice.nullIo) {
    if (choice.tty) throw new (require('./args').UsageError)('tty and null-io cannot be used together', []);
    return {
      config: { stdin: '', stdout: '', stderr: '', terminal: false },
      onStdinEnd: () => {},
      release: async () => {},
    };
  }
  const fifos = await newFifoSet(choice.fifoDir || DEFAULT_FIFO_DIR, id, { terminal: choice.tty });
  const config = { stdin: fifos.stdin, stdout: fifos.stdout, stderr: fifos.stderr, terminal: fifos.terminal };
  if (choice.detach) {
    let unhold: () => void;
    try {
      unhold = holdFifos(fifos);
    } catch (err) {
      await removeFifoSet(fifos);
      throw err;
    }
    return {
      config,
      onStdinEnd: () => {},
      release: async (opts = {}) => {
        unhold();
        if (!opts.keepFifos) await removeFifoSet(fifos);
      },
    };
  }
  try {
    return copyStdio(g, fifos, choice.tty);
  } catch (err) {
    await removeFifoSet(fifos);
    throw err;
  }
}

/**
 * Copies between the CLI's stdio and existing FIFOs (ours, or a running task's: attach),
 * the terminal raw while a process with a terminal has it.
 */
export function copyStdio(g: Globals, fifos: import('@berth/client').FifoSet, tty: boolean): ProcessStdio {
  const { copyIo, currentConsole } = clientModule();
  const config = { stdin: fifos.stdin, stdout: fifos.stdout, stderr: fifos.stderr, terminal: fifos.terminal };
  const con = tty ? currentConsole() : undefined;
  con?.setRaw();
  let stdinEnded = false;
  let closeIO: (() => void) | undefined;
  let stdinClosed = false;
  const closeStdin = () => {
    if (stdinClosed || !stdinEnded || !closeIO || !stdio.io) return;
    stdinClosed = true;
    const close = closeIO;
    stdio.io.closeStdin().then(close, close);
  };
  const stdio: ProcessStdio = {
    config,
    onStdinEnd(close) {
      closeIO = close;
      closeStdin();
    },
    release: async (opts = {}) => {
      con?.reset();
      if (!stdio.io) return;
      if (opts.keepFifos) stdio.io.cancel();
      else await stdio.io.close();
    },
  };
  if (con) stdio.console = con;
  try {
    stdio.io = copyIo(
      fifos,
      { stdin: g.io.stdin, stdout: g.io.stdout, ...(tty ? {} : { stderr: g.io.stderr }) },
      {
        onStdinEnd: () => {
          stdinEnded = true;
          closeStdin();
        },
      },
    );
  } catch (err) {
    con?.reset();
    throw err;
  }
  return stdio;
}

/** Lets output written before the process ended reach us, then stops copying and removes the FIFOs. */
export async function drainAndRelease(stdio: ProcessStdio): Promise<void> {
  if (stdio.io) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      stdio.io.wait(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, DRAIN_MS);
      }),
    ]);
    clearTimeout(timer);
  }
  await stdio.release();
}

/** Signals a waiting CLI passes on to its process (ctr forwards every signal it can catch). */
const FORWARDED: readonly NodeJS.Signals[] = [
  'SIGHUP',
  'SIGINT',
  'SIGQUIT',
  'SIGTERM',
  'SIGUSR1',
  'SIGUSR2',
  'SIGCONT',
  'SIGWINCH',
];

/**
 * Forwards the signals this process receives to the task or exec process (Tasks.Kill) until
 * the returned function is called. A process already gone stops the forwarding.
 */
export function forwardSignals(client: Client, ctx: Context, containerId: string, execId = ''): () => void {
  let stopped = false;
  const handlers = FORWARDED.map((name) => {
    const handler = () => {
      if (stopped) return;
      client.tasks.kill(ctx, containerId, constants.signals[name], { execId }).catch((err) => {
        if ((err as { code?: string }).code === 'ERR_NOT_FOUND') stop();
      });
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const [name, handler] of handlers) process.off(name, handler);
  };
  return stop;
}

/**
 * While attached to a terminal process: the console's size on every SIGWINCH, and now unless
 * the process already has it (`presized`: a process that exits at once would make this fail).
 */
export function resizeOnWinch(
  g: Globals,
  client: Client,
  ctx: Context,
  stdio: ProcessStdio,
  containerId: string,
  execId = '',
  presized = false,
): () => void {
  if (!stdio.console) return () => {};
  const { handleConsoleResize } = clientModule();
  return handleConsoleResize(
    stdio.console,
    ({ width, height }) => client.tasks.resizePty(ctx, containerId, execId, width, height),
    (err) => g.io.stderr.write(`berth: resize pty: ${(err as Error).message}\n`),
    { initial: !presized },
  );
}

/**
 * Sizes a terminal process's console before it starts, so its first look at the size is
 * right (ctr resizes only after the start, which a fast process can beat); a shim that cannot
 * yet is simply asked again after the start.
 */
export async function presizeConsole(
  client: Client,
  ctx: Context,
  stdio: ProcessStdio,
  containerId: string,
  execId = '',
): Promise<boolean> {
  if (!stdio.console) return false;
  try {
    const { width, height } = stdio.console.size();
    await client.tasks.resizePty(ctx, containerId, execId, width, height);
    return true;
  } catch {
    // resizeOnWinch after the start tries again and reports what still fails.
    return false;
  }
}

/** Signal names as moby's ParseSignal reads them: a number, or a name with or without SIG, any case. */
export function parseSignal(raw: string): number {
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (n > 0 && n < 65) return n;
  } else {
    const name = `SIG${raw.toUpperCase().replace(/^SIG/, '')}` as NodeJS.Signals;
    const n = (constants.signals as Record<string, number>)[name];
    if (n !== undefined) return n;
  }
  throw new (require('@berth/api') as typeof import('@berth/api')).InvalidArgumentError(
    `Invalid signal: ${raw}`,
  );
}
