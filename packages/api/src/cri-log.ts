/**
 * Kubernetes' container log format (`<RFC3339Nano> <stdout|stderr> <P|F> <text>\n`), shared
 * by the two writers of a CRI log: the CRI plugin (a container whose shim only offers FIFOs)
 * and berth's shim (stdio URI `cri-log://`), and by the readers that follow such a file.
 */
import { closeSync, constants, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, isAbsolute } from 'node:path';
import { Writable } from 'node:stream';
import { InvalidArgumentError } from './errors';
import { formatRFC3339Nano, type NanoDate, parseRFC3339, preciseNow } from './time';

export type LogStream = 'stdout' | 'stderr';

/** P for a piece of a line cut at the maximum size, F for a line's last piece. */
export function criLogLine(time: Date, stream: LogStream, partial: boolean, text: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`${formatRFC3339Nano(time)} ${stream} ${partial ? 'P' : 'F'} `),
    text,
    Buffer.from('\n'),
  ]);
}

/** One line of a CRI log, read back. */
export interface CriLogEntry {
  time: NanoDate;
  stream: LogStream;
  partial: boolean;
  /** The text without the newline the writer added. */
  text: Buffer;
}

/** Reads one CRI log line (with or without its newline); undefined when it is not one. */
export function parseCriLogLine(line: Buffer): CriLogEntry | undefined {
  const end = line.length > 0 && line[line.length - 1] === 0x0a ? line.length - 1 : line.length;
  const sp1 = line.indexOf(0x20);
  if (sp1 < 0) return undefined;
  const sp2 = line.indexOf(0x20, sp1 + 1);
  if (sp2 < 0) return undefined;
  const stream = line.toString('latin1', sp1 + 1, sp2);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = line.toString('latin1', sp2 + 1, sp2 + 2);
  if (tag !== 'P' && tag !== 'F') return undefined;
  if (sp2 + 2 < end && line[sp2 + 2] !== 0x20) return undefined;
  const time = parseRFC3339(line.toString('latin1', 0, sp1));
  if (!time) return undefined;
  return { time, stream, partial: tag === 'P', text: line.subarray(Math.min(sp2 + 3, end), end) };
}

/**
 * Splits a stream's bytes into CRI log lines (containerd's redirectLogs): a line longer than
 * maxLen (> 0) goes out as maxLen-sized P pieces, then its rest as F; what is left without a
 * newline when the stream ends is a full line.
 */
export class CriLineSplitter {
  private pending: Buffer = Buffer.alloc(0);

  constructor(
    private readonly maxLen: number,
    private readonly emit: (partial: boolean, text: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const limit = this.maxLen > 0 ? this.maxLen : Number.POSITIVE_INFINITY;
    for (;;) {
      const nl = buf.indexOf(0x0a);
      if (nl >= 0 && nl <= limit) {
        let line = buf.subarray(0, nl);
        if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
        this.emit(false, line);
        buf = buf.subarray(nl + 1);
        continue;
      }
      if (buf.length > limit) {
        this.emit(true, buf.subarray(0, limit));
        buf = buf.subarray(limit);
        continue;
      }
      break;
    }
    this.pending = Buffer.from(buf);
  }

  end(): void {
    if (this.pending.length > 0) this.emit(false, this.pending);
    this.pending = Buffer.alloc(0);
  }
}

/** The stdio scheme of berth's shim for "write this process's output as a CRI log". */
export const CRI_LOG_SCHEME = 'cri-log';

/** Where a `cri-log://` URI points and how long its lines may be (≤ 0: no limit). */
export interface CriLogTarget {
  path: string;
  maxLineSize: number;
}

/**
 * The stdout (and stderr) URI asking berth's shim to write the CRI log itself:
 * `cri-log:///var/log/pods/x/c/0.log?max_line_size=16384` (the path percent-encoded).
 */
export function criLogUri(target: CriLogTarget): string {
  if (!isAbsolute(target.path))
    throw new InvalidArgumentError(`cri log path ${JSON.stringify(target.path)}: must be absolute`);
  if (!Number.isSafeInteger(target.maxLineSize))
    throw new InvalidArgumentError(`cri log max_line_size ${target.maxLineSize}: must be an integer`);
  const path = target.path
    .split('/')
    .map((s) => encodeURIComponent(s))
    .join('/');
  return `${CRI_LOG_SCHEME}://${path}?max_line_size=${target.maxLineSize}`;
}

/** Reads a `cri-log://` URI back; InvalidArgument naming the URI and what is wrong with it. */
export function parseCriLogUri(uri: string): CriLogTarget {
  const bad = (why: string) => new InvalidArgumentError(`stdio ${JSON.stringify(uri)}: ${why}`);
  const prefix = `${CRI_LOG_SCHEME}://`;
  if (uri.slice(0, prefix.length).toLowerCase() !== prefix) throw bad(`not a ${prefix} URI`);
  const rest = uri.slice(prefix.length);
  const q = rest.indexOf('?');
  const rawPath = q < 0 ? rest : rest.slice(0, q);
  if (rawPath === '') throw bad('no log path');
  if (!rawPath.startsWith('/')) throw bad('the log path must be absolute (cri-log:///path)');
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw bad('the log path is not valid percent-encoding');
  }
  if (path.includes('\0')) throw bad('the log path holds a NUL byte');
  if (path.split('/').includes('..')) throw bad('the log path must not hold ".."');
  let maxLineSize: number | undefined;
  for (const pair of q < 0 ? [] : rest.slice(q + 1).split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    if (key !== 'max_line_size') throw bad(`unknown parameter ${JSON.stringify(key)}`);
    if (!/^-?\d{1,15}$/.test(value)) throw bad(`max_line_size ${JSON.stringify(value)} is not an integer`);
    maxLineSize = Number(value);
  }
  if (maxLineSize === undefined) throw bad('max_line_size is missing');
  return { path, maxLineSize };
}

/**
 * A container's CRI log file, written by whichever side reads the process's output (berth's
 * shim for `cri-log://`, the CRI plugin for a shim that only offers FIFOs): stdout and stderr
 * interleave line by line, each line one write(2) on an O_APPEND descriptor, so a reader never
 * sees half a line and a rotation (the kubelet renames the file) loses nothing: lines go to
 * the renamed file until reopen().
 */
export class CriLogFile {
  private fd: number;
  private readonly splitters: CriLineSplitter[] = [];

  /** `onWriteError` hears of a line a write failed to store (a full disk). */
  constructor(
    readonly target: CriLogTarget,
    private readonly onWriteError: (err: unknown) => void = () => {},
  ) {
    this.fd = CriLogFile.open(target.path);
  }

  private static open(path: string): number {
    mkdirSync(dirname(path), { recursive: true });
    return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
  }

  /** The Writable one stream's output goes into; ending it writes an unterminated last line. */
  stream(name: LogStream): Writable {
    const splitter = new CriLineSplitter(this.target.maxLineSize, (partial, text) =>
      this.writeLine(criLogLine(preciseNow(), name, partial, text)),
    );
    this.splitters.push(splitter);
    return new Writable({
      write(chunk: Buffer, _enc, cb) {
        splitter.push(chunk);
        cb();
      },
      final(cb) {
        splitter.end();
        cb();
      },
    });
  }

  private writeLine(line: Buffer): void {
    if (this.fd < 0) return;
    try {
      writeSync(this.fd, line);
    } catch (err) {
      // A full disk loses log lines, never the container (which would block on its pipe).
      this.onWriteError(err);
    }
  }

  /**
   * ReopenContainerLog: later lines go to a new file at the path (the old one was renamed;
   * lines in the splitters' hands are not lost: they are written once they are complete).
   */
  reopen(): void {
    if (this.fd < 0) return;
    const fd = CriLogFile.open(this.target.path);
    const old = this.fd;
    this.fd = fd;
    closeSync(old);
  }

  /** Writes what the streams still hold unterminated, and closes the file. */
  close(): void {
    for (const s of this.splitters) s.end();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
