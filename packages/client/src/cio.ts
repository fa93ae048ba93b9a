/**
 * A process's standard streams on the client side, as containerd's cio package: FIFOs in a
 * directory of their own, whose paths go to the daemon (Tasks.Create / Exec) and from there
 * to the shim, and the copying between them and the caller's streams.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, rmdir, unlink } from 'node:fs/promises';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { isFifoFile, removeTree } from '@berth/api';
import { mknod, S_IFIFO } from '@berth/sys';
import type { ProcessIoConfig } from './tasks';

/** Where berth's CLI makes FIFO directories unless told otherwise (containerd: /run/containerd/fifo). */
export const DEFAULT_FIFO_DIR = '/run/berth/fifo';

/** The FIFO paths of one process ('' where a stream is not wanted). */
export interface FifoSet {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** The directory created for them, removed by close(); absent for FIFOs found on a task. */
  dir?: string;
}

export interface FifoSetOptions {
  terminal?: boolean;
  /** Which streams get a FIFO (all by default; a terminal has no stderr of its own). */
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}

/**
 * Creates `<root>/<random>/` (mode 0700, root made if missing) holding the FIFOs
 * `<id>-stdin`, `<id>-stdout` and `<id>-stderr` (no stderr for a terminal).
 */
export async function newFifoSet(root: string, id: string, opts: FifoSetOptions = {}): Promise<FifoSet> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(root, `${id.slice(0, 32)}-`));
  const terminal = opts.terminal ?? false;
  const set: FifoSet = {
    stdin: opts.stdin === false ? '' : join(dir, `${id}-stdin`),
    stdout: opts.stdout === false ? '' : join(dir, `${id}-stdout`),
    stderr: opts.stderr === false || terminal ? '' : join(dir, `${id}-stderr`),
    terminal,
    dir,
  };
  try {
    for (const path of [set.stdin, set.stdout, set.stderr]) if (path) mknod(path, S_IFIFO | 0o700);
  } catch (err) {
    await removeTree(dir);
    throw err;
  }
  return set;
}

/** The FIFOs a task or exec process reports (for attach and cleanup), as containerd's loadFifos. */
export function fifoSetOf(config: ProcessIoConfig): FifoSet {
  return {
    stdin: config.stdin ?? '',
    stdout: config.stdout ?? '',
    stderr: config.stderr ?? '',
    terminal: config.terminal ?? false,
  };
}

// isFifoFile, not lstatSync: a plain stat of a FIFO breaks later require()s (@berth/api).
const isFifo = isFifoFile;

/**
 * Removes a set's FIFOs: the directory we created, or, for a set found on a task, the paths
 * that are FIFOs and then their directories when left empty (never anything else: a task's
 * stdout may be a log URI or a file of the user's).
 */
export async function removeFifoSet(set: FifoSet): Promise<void> {
  if (set.dir) {
    await removeTree(set.dir);
    return;
  }
  const dirs = new Set<string>();
  for (const path of [set.stdin, set.stdout, set.stderr]) {
    if (!path || !isFifo(path)) continue;
    await unlink(path).catch(() => {});
    dirs.add(dirname(path));
  }
  for (const dir of dirs) await rmdir(dir).catch(() => {});
}

/** The caller's side of a process's streams. */
export interface IoStreams {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
}

export interface CopyOptions {
  /**
   * Called once the caller's stdin ended and all of it sits in the FIFO. The FIFO stays open
   * (a FIFO nobody holds loses its contents): call closeStdin() once the process has started,
   * then Tasks.CloseIO (the shim holds a writer of its own until then).
   */
  onStdinEnd?: () => void;
}

/**
 * Opens a FIFO without blocking and without a writer or reader on the other side yet, so
 * no thread waits in open(2) (containerd's fifo package does the same with O_NONBLOCK):
 * readers open O_RDONLY|O_NONBLOCK and see EOF only after a writer came and went (epoll
 * reports nothing before); the stdin writer opens O_RDWR, which never fails with ENXIO.
 */
function openFifo(path: string, write: boolean): Socket {
  const flags = (write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK;
  const fd = openSync(path, flags);
  try {
    return new Socket({ fd, readable: !write, writable: write });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * Holds every FIFO of a set open without reading or writing (a detached start: the shim finds
 * its peers while it creates and starts the process, and output waits in the FIFOs for a
 * later attach). Returns the function that closes them.
 */
export function holdFifos(fifos: FifoSet): () => void {
  const fds: number[] = [];
  try {
    for (const [path, write] of [
      [fifos.stdin, true],
      [fifos.stdout, false],
      [fifos.terminal ? '' : fifos.stderr, false],
    ] as const) {
      if (path)
        fds.push(openSync(path, (write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK));
    }
  } catch (err) {
    for (const fd of fds) closeSync(fd);
    throw err;
  }
  return () => {
    for (const fd of fds.splice(0)) closeSync(fd);
  };
}

/**
 * The copying between a process's FIFOs and the caller's streams. Output is copied until the
 * shim closes its end (after the process exited and the task or exec was deleted); stdin until
 * the caller's stream ends.
 */
export class ProcessIo {
  readonly config: FifoSet;
  private readonly sockets: Socket[] = [];
  private readonly outputsDone: Promise<void>;
  private stdinSource?: Readable;
  private stdinSocket?: Socket;
  private closed = false;

  constructor(fifos: FifoSet, streams: IoStreams, opts: CopyOptions = {}) {
    this.config = fifos;
    const outputs: Promise<void>[] = [];
    try {
      const pairs: [string, Writable | undefined][] = [
        [fifos.stdout, streams.stdout],
        [fifos.terminal ? '' : fifos.stderr, streams.stderr],
      ];
      for (const [path, target] of pairs) {
        if (!path || !target) continue;
        const socket = openFifo(path, false);
        this.sockets.push(socket);
        outputs.push(
          new Promise<void>((resolve) => {
            socket.once('close', () => resolve());
            socket.on('error', () => {});
          }),
        );
        socket.pipe(target, { end: false });
      }
      if (fifos.stdin && streams.stdin) {
        const socket = openFifo(fifos.stdin, true);
        this.sockets.push(socket);
        this.stdinSocket = socket;
        this.stdinSource = streams.stdin;
        // The process may stop reading (or exit) at any time: a write to a closed FIFO is no error here.
        socket.on('error', () => {});
        let ended = false;
        const finish = () => {
          if (ended) return;
          ended = true;
          streams.stdin?.unpipe(socket);
          // An empty write completes once everything before it was written.
          socket.write(Buffer.alloc(0), () => {
            if (!this.closed) opts.onStdinEnd?.();
          });
        };
        if (streams.stdin.readableEnded) finish();
        else {
          streams.stdin.once('end', finish);
          streams.stdin.pipe(socket, { end: false });
        }
      }
    } catch (err) {
      this.cancel();
      throw err;
    }
    this.outputsDone = Promise.all(outputs).then(() => {});
  }

  /** Resolves once every output stream reached its end (or was cancelled). */
  wait(): Promise<void> {
    return this.outputsDone;
  }

  /** Closes our end of the stdin FIFO (what is written stays for the process to read). */
  closeStdin(): Promise<void> {
    const socket = this.stdinSocket;
    if (!socket || socket.destroyed) return Promise.resolve();
    if (this.stdinSource) this.stdinSource.unpipe(socket);
    return new Promise((resolve) => {
      socket.end(() => {
        socket.destroy();
        resolve();
      });
      socket.once('close', () => resolve());
    });
  }

  /** Stops copying: unhooks the caller's stdin and closes every FIFO we hold open. */
  cancel(): void {
    this.closed = true;
    if (this.stdinSource && this.stdinSocket) {
      this.stdinSource.unpipe(this.stdinSocket);
      // Leave the caller's stdin as it was before piping (paused), so it holds no loop open.
      this.stdinSource.pause();
    }
    for (const s of this.sockets) s.destroy();
  }

  /** cancel(), then removes the FIFOs (see removeFifoSet). */
  async close(): Promise<void> {
    this.cancel();
    await removeFifoSet(this.config);
  }
}

/**
 * Starts copying between a FIFO set and the caller's streams (the FIFOs must exist: made by
 * newFifoSet, or found on a running task to attach to). Output goes to streams.stdout and
 * streams.stderr without ending them.
 */
export function copyIo(fifos: FifoSet, streams: IoStreams, opts: CopyOptions = {}): ProcessIo {
  return new ProcessIo(fifos, streams, opts);
}
