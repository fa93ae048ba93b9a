import { EventEmitter } from 'node:events';
import { closeSync, fstatSync, openSync, read, statSync } from 'node:fs';
import { type LogStream, parseCriLogLine } from '@berth/api';

/** How often a followed log is read for new lines (the shim writes it; nothing tells us). */
const POLL_MS = 50;

/**
 * A container's output for Attach when berth's shim writes its CRI log: the log file followed
 * from its end while someone is attached, its lines decoded back into the bytes the process
 * wrote (P pieces as they are, F lines with their newline). A rotation (the kubelet renames the
 * file, then ReopenContainerLog) is followed: the renamed file is read to its end, then the new
 * one from its start. Same surface as OutputFanout.
 */
export class LogFollower {
  private readonly events = new EventEmitter();
  private ended = false;
  private fd = -1;
  private ino = 0;
  private pos = 0;
  private pending: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;

  constructor(readonly path: string) {
    this.events.setMaxListeners(0);
  }

  subscribe(onData: (stream: LogStream, data: Buffer) => void, onEnd: () => void): () => void {
    if (this.ended) {
      queueMicrotask(onEnd);
      return () => {};
    }
    if (this.events.listenerCount('data') === 0) this.startFollowing();
    this.events.on('data', onData);
    this.events.once('end', onEnd);
    return () => {
      this.events.off('data', onData);
      this.events.off('end', onEnd);
      if (this.events.listenerCount('data') === 0) this.stopFollowing();
    };
  }

  /** The process exited and its output is in the file: what is left is passed on, then the end. */
  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    if (this.timer) {
      clearInterval(this.timer);
      await this.reading;
      await this.readAll();
    }
    this.stopFollowing();
    this.events.emit('end');
  }

  private startFollowing(): void {
    try {
      this.fd = openSync(this.path, 'r');
      const st = fstatSync(this.fd);
      this.ino = st.ino;
      // Output from now on: what is already in the file is the log's, not the attach's.
      this.pos = st.size;
    } catch {
      // No file yet: the first poll opens it from its start.
      this.fd = -1;
      this.pos = 0;
    }
    this.pending = Buffer.alloc(0);
    this.timer = setInterval(() => {
      this.reading ??= this.readAll().finally(() => {
        this.reading = undefined;
      });
    }, POLL_MS);
    this.timer.unref();
  }

  private stopFollowing(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** Reads the followed file to its end; moves to a new file at the path once the old one is done. */
  private async readAll(): Promise<void> {
    for (;;) {
      if (this.fd < 0) {
        try {
          this.fd = openSync(this.path, 'r');
          this.ino = fstatSync(this.fd).ino;
          this.pos = 0;
        } catch {
          return;
        }
      }
      const fd = this.fd;
      if (!(await this.drain(fd))) return;
      // Rotated: the path names a new file, and the old one gets no more lines once the shim
      // reopened; what reached it before is read first.
      let rotated = false;
      try {
        rotated = statSync(this.path).ino !== this.ino;
      } catch {
        rotated = false;
      }
      if (!rotated || !(await this.drain(fd))) return;
      closeSync(fd);
      this.fd = -1;
      this.pending = Buffer.alloc(0);
    }
  }

  /** Reads fd from our position to its end; false when following stopped meanwhile. */
  private async drain(fd: number): Promise<boolean> {
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = await new Promise<number>((resolve) =>
        read(fd, buf, 0, buf.length, this.pos, (err, bytes) => resolve(err ? 0 : bytes)),
      );
      if (this.fd !== fd) return false;
      if (n === 0) return true;
      this.pos += n;
      this.take(buf.subarray(0, n));
    }
  }

  private take(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a)) {
      const entry = parseCriLogLine(buf.subarray(0, nl + 1));
      buf = buf.subarray(nl + 1);
      if (!entry) continue;
      const data = entry.partial ? Buffer.from(entry.text) : Buffer.concat([entry.text, Buffer.from('\n')]);
      this.events.emit('data', entry.stream, data);
    }
    this.pending = Buffer.from(buf);
  }
}
