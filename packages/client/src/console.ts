/**
 * The caller's terminal, for processes given a terminal of their own (`run -t`): raw input
 * while attached, and the window size passed on whenever it changes (containerd's console
 * package and ctr's HandleConsoleResize).
 */
import { isatty, type ReadStream } from 'node:tty';
import { getWinsize } from '@berth/sys';

export interface ConsoleSize {
  width: number;
  height: number;
}

export interface Console {
  /** The file descriptor of the terminal (the first of stdin, stdout, stderr that is one). */
  readonly fd: number;
  /** Puts the terminal in raw mode (when stdin is the terminal): keys go to the process as typed. */
  setRaw(): void;
  /** Restores the mode the terminal had. */
  reset(): void;
  size(): ConsoleSize;
}

/** The terminal this process runs on, or undefined when none of stdin, stdout, stderr is one. */
export function currentConsole(stdin: NodeJS.ReadStream = process.stdin): Console | undefined {
  const fd = [0, 1, 2].find((n) => isatty(n));
  if (fd === undefined) return undefined;
  let raw = false;
  const input = isatty(0) ? (stdin as ReadStream) : undefined;
  return {
    fd,
    setRaw() {
      if (input && typeof input.setRawMode === 'function') {
        input.setRawMode(true);
        raw = true;
      }
    },
    reset() {
      if (raw && input) {
        input.setRawMode(false);
        raw = false;
      }
    },
    size() {
      const { rows, cols } = getWinsize(fd);
      return { width: cols, height: rows };
    },
  };
}

/**
 * Sends the console's size now (unless `initial` is false: the process was given it already)
 * and on every SIGWINCH through `resize` (Tasks.ResizePty); errors go to `onError`. Returns
 * the function that stops listening.
 */
export function handleConsoleResize(
  con: Pick<Console, 'size'>,
  resize: (size: ConsoleSize) => Promise<void>,
  onError: (err: unknown) => void = () => {},
  opts: { initial?: boolean } = {},
): () => void {
  const send = (): void => {
    let size: ConsoleSize;
    try {
      size = con.size();
    } catch (err) {
      onError(err);
      return;
    }
    resize(size).catch(onError);
  };
  if (opts.initial !== false) send();
  process.on('SIGWINCH', send);
  return () => {
    process.off('SIGWINCH', send);
  };
}
