import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';
import { formatRFC3339Nano, preciseNow } from '@berth/api';

export type LogStream = 'stdout' | 'stderr';

/**
 * One line of the CRI log format the kubelet reads (`<RFC3339Nano> <stream> <F|P> <text>\n`):
 * P for a piece of a line cut at the maximum size, F for a line's last piece.
 */
export function criLogLine(time: Date, stream: LogStream, partial: boolean, text: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`${formatRFC3339Nano(time)} ${stream} ${partial ? 'P' : 'F'} `),
    text,
    Buffer.from('\n'),
  ]);
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
    for (;;) {
      const nl = buf.indexOf(0x0a);
      const limit = this.maxLen > 0 ? this.maxLen : Number.POSITIVE_INFINITY;
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

/**
 * A container's log file, written by the daemon from the process's FIFOs: stdout and stderr
 * interleave line by line, each line one write(2) on an O_APPEND descriptor (so a rotation by
 * the kubelet, which renames the file, keeps our descriptor on the renamed file until
 * ReopenContainerLog, as with containerd).
 */
export class CriLogFile {
  private fd: number;
  private readonly splitters: CriLineSplitter[] = [];

  constructor(
    readonly path: string,
    private readonly maxLen: number,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'a', 0o640);
  }

  /** A Writable for one stream; end() of the splitter flushes a last unterminated line. */
  stream(stream: LogStream): { writable: Writable; splitter: CriLineSplitter } {
    const splitter = new CriLineSplitter(this.maxLen, (partial, text) => {
      if (this.fd < 0) return;
      try {
        writeSync(this.fd, criLogLine(preciseNow(), stream, partial, text));
      } catch {
        // A full disk loses log lines, never the container.
      }
    });
    this.splitters.push(splitter);
    const writable = new Writable({
      write(chunk: Buffer, _enc, cb) {
        splitter.push(chunk);
        cb();
      },
    });
    return { writable, splitter };
  }

  /** Flushes unterminated lines and closes the file. */
  close(): void {
    for (const s of this.splitters) s.end();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** A Writable keeping at most `max` bytes and dropping the rest (containerd's cappedWriter for ExecSync). */
export class CappedBuffer extends Writable {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly max: number) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    const room = this.max - this.size;
    if (room > 0) {
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.chunks.push(Buffer.from(part));
      this.size += part.length;
    }
    cb();
  }

  value(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
