/**
 * A process's stdio: pipes handed to the OCI runtime, copied to and from the FIFOs (or
 * files) the client named; or, with a terminal, the pty master runc sends over a console
 * socket, copied the same way.
 *
 * FIFOs are opened without ever blocking: the shim opens its own read end of an output
 * FIFO before its write end (so the open succeeds whether or not the client is reading,
 * and a client that goes away never causes EPIPE), and its own write end of the stdin
 * FIFO after the read end (so the container sees EOF only once the client closed its end
 * and CloseIO closed ours).
 */
import {
  closeSync,
  constants,
  createWriteStream,
  fchownSync,
  read as fsRead,
  write as fsWrite,
  mkdtempSync,
  openSync,
  statSync,
} from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable, Writable } from 'node:stream';
import * as tty from 'node:tty';
import {
  CRI_LOG_SCHEME,
  CriLogFile,
  type CriLogTarget,
  InvalidArgumentError,
  NotImplementedError,
  parseCriLogUri,
  removeTreeSync,
} from '@berth/api';
import { dup, listenUnix, pipe, receiveFd, setNonblocking, setWinsize } from '@berth/sys';
import type { Logger } from './log';
import type { StdioSlot } from './runc';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

const closeQuietly = (fd: number | undefined): void => {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
};

function isFifo(path: string): boolean {
  try {
    // bigint: a plain stat of a FIFO breaks later require()s (@berth/api special-files).
    return statSync(path, { bigint: true }).isFIFO();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

const schemeOf = (uri: string): string | undefined =>
  /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();

/**
 * Resolves the stdio URIs containerd may send: bare paths and fifo:// (FIFOs or files),
 * file://; and berth's own cri-log:// (see criLogOf), which stays a URI here.
 */
export function resolveStdio(paths: StdioPaths): StdioPaths {
  const scheme = schemeOf(paths.stdout);
  const strip = (p: string): string => p.replace(/^fifo:\/\//i, '');
  if (scheme === undefined || scheme === 'fifo') {
    return { ...paths, stdin: strip(paths.stdin), stdout: strip(paths.stdout), stderr: strip(paths.stderr) };
  }
  if (scheme === 'file') {
    const file = decodeURIComponent(new URL(paths.stdout).pathname);
    return { ...paths, stdout: file, stderr: paths.stderr === '' ? '' : file };
  }
  if (scheme === CRI_LOG_SCHEME) {
    parseCriLogUri(paths.stdout);
    // Both streams go to the one file; stderr names it too, or nothing (a terminal has none).
    if (paths.stderr !== '' && paths.stderr !== paths.stdout) {
      throw new InvalidArgumentError(
        `stdio stderr ${JSON.stringify(paths.stderr)}: must be empty or the stdout URI ${JSON.stringify(paths.stdout)}`,
      );
    }
    return { ...paths, stdin: strip(paths.stdin) };
  }
  if (scheme === 'binary') {
    throw new NotImplementedError(
      `stdio ${JSON.stringify(paths.stdout)}: logging binaries are not supported`,
    );
  }
  throw new InvalidArgumentError(`unknown STDIO scheme ${scheme}`);
}

/** The CRI log a process's stdout URI asks this shim to write, if it does. */
export function criLogOf(paths: StdioPaths): CriLogTarget | undefined {
  return schemeOf(paths.stdout) === CRI_LOG_SCHEME ? parseCriLogUri(paths.stdout) : undefined;
}

/** An output destination: the writable side and what to close once it is finished. */
interface Sink {
  stream: Writable;
  release(): void;
}

const sharedFiles = new Map<string, { stream: Writable; users: number }>();

function openSink(path: string): Sink {
  if (isFifo(path)) {
    const hold = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    let fd: number;
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      closeQuietly(hold);
      throw err;
    }
    const stream = new net.Socket({ fd, readable: false, writable: true });
    return { stream, release: () => closeQuietly(hold) };
  }
  // A regular file (containerd's file:// log) that stdout and stderr may share.
  let shared = sharedFiles.get(path);
  if (shared === undefined) {
    const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND);
    shared = { stream: createWriteStream('', { fd }), users: 0 };
    sharedFiles.set(path, shared);
  }
  shared.users++;
  const entry = shared;
  // Each copy ends its own proxy; the file closes when the last one is done.
  const proxy = new PassThrough();
  proxy.pipe(entry.stream, { end: false });
  proxy.on('end', () => {
    if (--entry.users === 0) {
      sharedFiles.delete(path);
      entry.stream.end();
    }
  });
  return { stream: proxy, release: () => {} };
}

/** Opens the stdin FIFO for reading, plus our own writer that keeps EOF away until CloseIO. */
function openSource(path: string): { stream: Readable; hold: number } {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let hold: number;
  try {
    hold = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  return { stream: new net.Socket({ fd, readable: true, writable: false }), hold };
}

/**
 * Copies src into dst until src ends, then ends dst (keeping what is still buffered: a pty
 * ends with EIO, which must not discard the last output). Resolves, never rejects, once
 * dst is finished or broken.
 */
function copy(src: Readable, dst: Writable, log: Logger, what: string): Promise<void> {
  return new Promise((resolve) => {
    src.pipe(dst);
    src.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EIO') log.debug(`copy ${what}: read`, { error: err });
      src.unpipe(dst);
      dst.end();
    });
    dst.on('error', (err) => {
      log.debug(`copy ${what}: write`, { error: err });
      src.unpipe(dst);
      resolve();
    });
    dst.on('finish', resolve);
    dst.on('close', resolve);
  });
}

/** The common part of pipe and console stdio. */
abstract class BaseIO {
  protected stdinHold: number | undefined;
  protected readonly copies: Promise<void>[] = [];
  protected readonly streams: (Readable | Writable)[] = [];
  protected readonly releases: (() => void)[] = [];

  /** The CRI log the output goes to, when stdout is a cri-log:// URI. */
  protected readonly criLog: CriLogFile | undefined;

  constructor(
    readonly paths: StdioPaths,
    protected readonly log: Logger,
  ) {
    const target = criLogOf(paths);
    this.criLog = target
      ? new CriLogFile(target, (error) => log.warn('cri log: write', { path: target.path, error }))
      : undefined;
  }

  /** ReopenContainerLog; false when this process's output does not go to a CRI log. */
  reopenLog(): boolean {
    if (!this.criLog) return false;
    this.criLog.reopen();
    return true;
  }

  /** CloseIO: drop our writer on the stdin FIFO, so the container sees EOF once the client closes too. */
  closeStdin(): void {
    closeQuietly(this.stdinHold);
    this.stdinHold = undefined;
  }

  /** Waits for the output copies to finish, at most timeoutMs. */
  async wait(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.copies),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Closes everything still open. */
  close(): void {
    this.closeStdin();
    for (const s of this.streams) s.destroy();
    for (const r of this.releases) r();
    this.releases.length = 0;
    this.criLog?.close();
  }

  protected output(src: Readable, path: string, what: 'stdout' | 'stderr' | 'console'): void {
    const sink: Sink = this.criLog
      ? { stream: this.criLog.stream(what === 'stderr' ? 'stderr' : 'stdout'), release: () => {} }
      : openSink(path);
    this.streams.push(src, sink.stream);
    this.copies.push(
      copy(src, sink.stream, this.log, what).then(() => {
        sink.stream.destroy();
        sink.release();
      }),
    );
  }

  protected input(dst: Writable, end: boolean): void {
    const source = openSource(this.paths.stdin);
    this.stdinHold = source.hold;
    this.streams.push(source.stream);
    if (end) {
      void copy(source.stream, dst, this.log, 'stdin');
    } else {
      source.stream.pipe(dst, { end: false });
      source.stream.on('error', (err) => this.log.debug('copy stdin', { error: err }));
    }
  }
}

/** Stdio through pipes: the runtime gets the child ends, the shim copies the parent ends. */
export class PipeIO extends BaseIO {
  private readonly childEnds: number[] = [];
  private readonly parentEnds: { stdin?: number; stdout?: number; stderr?: number } = {};
  readonly runtimeStdio: [StdioSlot, StdioSlot, StdioSlot] = ['ignore', 'ignore', 'ignore'];

  constructor(paths: StdioPaths, log: Logger, owner?: { uid: number; gid: number }) {
    super(paths, log);
    try {
      if (paths.stdin !== '') {
        const [r, w] = pipe();
        this.childEnds.push(r);
        this.parentEnds.stdin = w;
        this.runtimeStdio[0] = r;
      }
      if (paths.stdout !== '') {
        const [r, w] = pipe();
        this.childEnds.push(w);
        this.parentEnds.stdout = r;
        this.runtimeStdio[1] = w;
      }
      if (paths.stderr !== '') {
        const [r, w] = pipe();
        this.childEnds.push(w);
        this.parentEnds.stderr = r;
        this.runtimeStdio[2] = w;
      }
      if (owner !== undefined && (owner.uid !== 0 || owner.gid !== 0)) {
        for (const fd of this.childEnds) fchownSync(fd, owner.uid, owner.gid);
      }
    } catch (err) {
      this.closeAfterStart();
      for (const fd of Object.values(this.parentEnds)) closeQuietly(fd);
      this.criLog?.close();
      throw err;
    }
  }

  /** Closes the ends the runtime passed on to the container (after create/exec returned). */
  closeAfterStart(): void {
    for (const fd of this.childEnds.splice(0)) closeQuietly(fd);
  }

  /** Opens the client's FIFOs and starts copying. */
  start(): void {
    const { stdin, stdout, stderr } = this.parentEnds;
    this.parentEnds.stdin = this.parentEnds.stdout = this.parentEnds.stderr = undefined;
    if (stdout !== undefined) {
      this.output(
        new net.Socket({ fd: stdout, readable: true, writable: false }),
        this.paths.stdout,
        'stdout',
      );
    }
    if (stderr !== undefined) {
      this.output(
        new net.Socket({ fd: stderr, readable: true, writable: false }),
        this.paths.stderr,
        'stderr',
      );
    }
    if (stdin !== undefined) {
      const dst = new net.Socket({ fd: stdin, readable: false, writable: true });
      dst.on('error', () => {});
      this.streams.push(dst);
      this.input(dst, true);
    }
  }

  override close(): void {
    this.closeAfterStart();
    for (const fd of Object.values(this.parentEnds)) closeQuietly(fd);
    super.close();
  }
}

/** A unix socket runc connects to, to hand over the pty master of a terminal process. */
export class ConsoleSocket {
  readonly path: string;
  private readonly dir: string;
  private fd: number | undefined;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'berth-pty-'));
    this.path = join(this.dir, 'pty.sock');
    try {
      this.fd = listenUnix(this.path, { nonblocking: true });
    } catch (err) {
      removeTreeSync(this.dir);
      throw err;
    }
  }

  /** The pty master the runtime sent (call once the runtime command has returned). */
  async receive(): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return receiveFd(this.fd!);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 100) {
          throw new Error(`failed to retrieve console master: ${(err as Error).message}`, { cause: err });
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  close(): void {
    closeQuietly(this.fd);
    this.fd = undefined;
    removeTreeSync(this.dir);
  }
}

/**
 * Writes into a pty master without ever blocking the event loop: Node's tty streams write
 * a pty master with blocking writes, which would hang the whole shim once a container in
 * raw mode stops reading its terminal. This writer owns a duplicate of the (non-blocking)
 * master, writes from the thread pool and waits out EAGAIN.
 */
class PtyWriter extends Writable {
  private fd: number | undefined;

  constructor(master: number) {
    super({ highWaterMark: 64 * 1024 });
    this.fd = dup(master);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeFrom(chunk, 0, 1, callback);
  }

  private writeFrom(
    chunk: Buffer,
    offset: number,
    backoff: number,
    callback: (error?: Error | null) => void,
  ): void {
    const fd = this.fd;
    if (fd === undefined) {
      callback();
      return;
    }
    fsWrite(fd, chunk, offset, chunk.length - offset, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.writeFrom(chunk, offset, Math.min(backoff * 2, 100), callback), backoff);
          return;
        }
        // EIO: the container's side is gone; what it did not read is dropped, as a terminal would.
        callback(err.code === 'EIO' ? null : err);
        return;
      }
      if (offset + n < chunk.length) this.writeFrom(chunk, offset + n, 1, callback);
      else callback();
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Only closed here, after the last write callback: the number is never reused under a write.
    closeQuietly(this.fd);
    this.fd = undefined;
    callback(error);
  }

  override _final(callback: (error?: Error | null) => void): void {
    callback();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The output of a pty master, to its end. Node's tty stream (on a duplicate of the master)
 * carries the output while the process runs, but it ends early: once the slave side is
 * closed the master polls POLLHUP, and libuv takes POLLHUP after a short read for end of
 * file (true of a pipe, not of a pty, which hands out its buffer a piece at a time), so
 * up to the pty's whole buffer (~68 KiB) was lost whenever the client read slower than
 * the container wrote. So once that stream ends, the rest is read from the master by hand
 * until the process has exited and the master reads EIO (the container's side is closed,
 * and the kernel returns EIO only once nothing is left) or, with the slave still held by
 * someone else, has nothing more to give (containerd stops there too).
 */
class ConsoleOutput extends PassThrough {
  private exited = false;
  private reading = false;
  private closeWhenIdle = false;
  private readonly live: tty.ReadStream;

  constructor(
    private fd: number | undefined,
    private readonly log: Logger,
  ) {
    super();
    const live = new tty.ReadStream(dup(fd!));
    this.live = live;
    live.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EIO') log.debug('console', { error: err });
    });
    live.pipe(this, { end: false });
    live.once('close', () => {
      live.unpipe(this);
      void this.drain();
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.live.destroy();
    callback(error);
  }

  /** The process is gone: what the pty still holds is the last of its output. */
  processExited(): void {
    this.exited = true;
    // A background process may still hold the slave, and the tty stream would then wait for
    // it: from here on the master is read by hand, which stops once it has nothing more to
    // give, as containerd's console copy stops at EAGAIN after the exit.
    if (!this.live.destroyed) {
      this.live.unpipe(this);
      for (let chunk = this.live.read(); chunk !== null; chunk = this.live.read()) this.write(chunk);
      this.live.destroy();
    }
  }

  /** Closes our master once no read is using it (the number must not be reused under a read). */
  closeMaster(): void {
    if (this.reading) {
      this.closeWhenIdle = true;
      return;
    }
    closeQuietly(this.fd);
    this.fd = undefined;
  }

  private read1(buf: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      fsRead(this.fd!, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  private async drain(): Promise<void> {
    const buf = Buffer.alloc(64 * 1024);
    let quiet = 0;
    let idle = 1;
    try {
      while (this.fd !== undefined && !this.destroyed) {
        let n: number;
        this.reading = true;
        try {
          n = await this.read1(buf);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EAGAIN') {
            if (code !== 'EIO') this.log.debug('console: read', { error: err });
            return;
          }
          n = 0;
        } finally {
          this.reading = false;
          if (this.closeWhenIdle) this.closeMaster();
        }
        if (n > 0) {
          quiet = 0;
          idle = 1;
          if (!this.write(Buffer.from(buf.subarray(0, n)))) {
            await new Promise((r) => {
              this.once('drain', r);
              this.once('close', r);
            });
          }
          continue;
        }
        // Nothing now: before the exit the process may write more; after it, a few empty
        // reads in a row mean someone else holds the slave and the output is complete.
        if (this.exited && ++quiet >= 3) return;
        await sleep(idle);
        idle = Math.min(idle * 2, 50);
      }
    } finally {
      if (!this.destroyed) this.end();
    }
  }
}

/** Stdio through a pty: the master is copied to the stdout FIFO and fed from the stdin FIFO. */
export class ConsoleIO extends BaseIO {
  private readonly out: ConsoleOutput;
  private masterClosed = false;

  constructor(
    paths: StdioPaths,
    log: Logger,
    private readonly master: number,
  ) {
    super(paths, log);
    setNonblocking(master, true);
    this.out = new ConsoleOutput(master, log);
  }

  start(): void {
    if (this.paths.stdin !== '') {
      const writer = new PtyWriter(this.master);
      writer.on('error', (err) => this.log.debug('console input', { error: err }));
      this.streams.push(writer);
      this.input(writer, false);
    }
    if (this.paths.stdout !== '') this.output(this.out, this.paths.stdout, 'console');
    else this.out.resume();
  }

  /** The process exited: the console's output ends once the pty is empty. */
  processExited(): void {
    this.out.processExited();
  }

  /** Sets the window size; a no-op once the console is gone (a resize racing the exit). */
  resize(width: number, height: number): void {
    if (this.masterClosed) return;
    setWinsize(this.master, { rows: height, cols: width });
  }

  override close(): void {
    super.close();
    this.out.destroy();
    this.masterClosed = true;
    this.out.closeMaster();
  }
}
