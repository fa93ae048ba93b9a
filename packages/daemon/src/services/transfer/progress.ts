import { encodeAny, type wire } from '@berth/api';
import type { Stream } from '../streaming/manager';

export const PROGRESS_TYPE = 'containerd.types.transfer.Progress';

/** containerd.types.transfer.Progress; fields left out are their defaults. */
export type ProgressMsg = Partial<wire.transferTypes.Progress> & Pick<wire.transferTypes.Progress, 'event'>;

/**
 * Sends Progress messages on a transfer's progress stream, in order. "downloading" style
 * updates of one object are sent at most every `intervalMs` (the last one before a state
 * change always goes out); a client that went away stops the reporting, never the transfer.
 */
export class ProgressReporter {
  private chain: Promise<void> = Promise.resolve();
  private failed = false;
  private readonly lastSent = new Map<string, number>();
  private readonly pending = new Map<string, ProgressMsg>();

  constructor(
    private readonly stream: Stream | undefined,
    private readonly intervalMs = 100,
  ) {}

  get active(): boolean {
    return this.stream !== undefined && !this.failed;
  }

  private send(msg: ProgressMsg): void {
    if (!this.active) return;
    const any = encodeAny(PROGRESS_TYPE, {
      event: msg.event,
      name: msg.name ?? '',
      parents: msg.parents ?? [],
      progress: msg.progress ?? 0,
      total: msg.total ?? 0,
    });
    this.chain = this.chain
      .then(() => this.stream!.send(any))
      .catch(() => {
        this.failed = true;
      });
  }

  /** An event that always goes out (after any update of the same object held back). */
  emit(msg: ProgressMsg): void {
    if (msg.name) this.flush(msg.name);
    this.send(msg);
  }

  /** A progress update that may be coalesced with the next one of the same name. */
  update(msg: ProgressMsg & { name: string }): void {
    const now = Date.now();
    const last = this.lastSent.get(msg.name) ?? 0;
    if (now - last >= this.intervalMs) {
      this.pending.delete(msg.name);
      this.lastSent.set(msg.name, now);
      this.send(msg);
    } else {
      this.pending.set(msg.name, msg);
    }
  }

  private flush(name: string): void {
    const p = this.pending.get(name);
    if (p) {
      this.pending.delete(name);
      this.send(p);
    }
  }

  /** Sends what is held back, waits for the stream to take everything, and ends the stream. */
  async close(): Promise<void> {
    for (const name of [...this.pending.keys()]) this.flush(name);
    await this.chain;
    this.stream?.close();
  }
}
