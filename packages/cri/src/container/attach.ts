import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import type { LogStream } from '@berth/api';

/**
 * What Attach reaches of a running container: its stdin (when it was created with one) and
 * its output from now on. The streaming server's attach uses this; where the output comes
 * from (the daemon's FIFO copy, or the log the shim writes) is the container side's business.
 */
export interface AttachIo {
  /** Writes reach the container's stdin; undefined when the container has no stdin. */
  readonly stdin?: Writable;
  /**
   * Closes the container's stdin for good (the process reads EOF): what an attach with
   * stdin_once does when its client's stdin ends. Absent when the container has no stdin.
   */
  closeStdin?(): Promise<void>;
  /** Whether the container was created with a terminal (its output is all stdout). */
  readonly tty: boolean;
  /**
   * Calls onData with each chunk the container writes from now on, and onEnd once its output
   * ended (the process exited and its output drained). Returns a function that stops the calls.
   */
  subscribe(onData: (stream: LogStream, data: Buffer) => void, onEnd: () => void): () => void;
}

/** Fans a container's output out to attached clients; the copy from the FIFOs feeds it. */
export class OutputFanout {
  private readonly events = new EventEmitter();
  private ended = false;

  constructor() {
    this.events.setMaxListeners(0);
  }

  /** A Writable that passes each chunk on as `stream`'s output (and to `next`). */
  tee(stream: LogStream, next: Writable): Writable {
    const events = this.events;
    return new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (events.listenerCount('data') > 0) events.emit('data', stream, chunk);
        next.write(chunk, cb);
      },
      final(cb) {
        next.end();
        cb();
      },
    });
  }

  /** The output ended: attached clients are told and later ones end at once. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.events.emit('end');
  }

  subscribe(onData: (stream: LogStream, data: Buffer) => void, onEnd: () => void): () => void {
    if (this.ended) {
      queueMicrotask(onEnd);
      return () => {};
    }
    this.events.on('data', onData);
    this.events.once('end', onEnd);
    return () => {
      this.events.off('data', onData);
      this.events.off('end', onEnd);
    };
  }
}
