import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';
import { CriLineSplitter, criLogLine, type LogStream, preciseNow } from '@berth/api';

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

  /**
   * ReopenContainerLog: the kubelet renamed the file; later lines go to a new one at the path
   * (lines in the splitters' hands are not lost: they are written once they are complete).
   */
  reopen(): void {
    if (this.fd < 0) return;
    const fd = openSync(this.path, 'a', 0o640);
    const old = this.fd;
    this.fd = fd;
    closeSync(old);
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
