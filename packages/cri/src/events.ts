import type { wire } from '@berth/api';
import type { CriLog } from './deps';

export type ContainerEventType = wire.cri.ContainerEventType;

/** How many events a subscriber may have waiting: containerd 1.7's containerEventsChan holds 1000. */
export const CONTAINER_EVENT_BUFFER = 1000;

/**
 * Builds the event of a transition: the pod's status and its containers' statuses as they
 * are when the event is built (containerd's generateAndSendContainerEvent).
 */
export type ContainerEventBuilder = (
  containerId: string,
  sandboxId: string,
  type: ContainerEventType,
  createdAt: number,
) => Promise<wire.cri.ContainerEventResponse>;

/** One GetContainerEvents caller: events wait in a bounded queue until its stream takes them. */
class Subscriber implements AsyncIterator<wire.cri.ContainerEventResponse> {
  private readonly queue: wire.cri.ContainerEventResponse[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  /** Events dropped since the queue last had room (one warning per run of drops). */
  private dropping = 0;

  constructor(
    private readonly capacity: number,
    private readonly log: CriLog,
    private readonly onClose: (s: Subscriber) => void,
  ) {}

  offer(ev: wire.cri.ContainerEventResponse): void {
    if (this.closed) return;
    if (this.queue.length >= this.capacity) {
      // containerd drops when its channel is full rather than hold up the call that made the event.
      if (this.dropping++ === 0)
        this.log.warn(
          `a GetContainerEvents subscriber is not keeping up (${this.capacity} events waiting): dropping events, the first for container ${ev.containerId}`,
        );
      return;
    }
    if (this.dropping > 0) {
      this.log.warn(`a GetContainerEvents subscriber lost ${this.dropping} events`);
      this.dropping = 0;
    }
    this.queue.push(ev);
    this.wake?.();
  }

  async next(): Promise<IteratorResult<wire.cri.ContainerEventResponse>> {
    for (;;) {
      const ev = this.queue.shift();
      if (ev) return { value: ev, done: false };
      if (this.closed) return { value: undefined, done: true };
      await new Promise<void>((r) => {
        this.wake = r;
      });
      this.wake = undefined;
    }
  }

  async return(): Promise<IteratorResult<wire.cri.ContainerEventResponse>> {
    this.close();
    return { value: undefined, done: true };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.onClose(this);
    this.wake?.();
  }

  get waiting(): number {
    return this.queue.length;
  }
}

/**
 * The CRI's container events (GetContainerEvents, the kubelet's evented PLEG): every pod and
 * container transition goes to every subscriber. containerd 1.7 has one channel that the
 * first caller drains and that fills up (then drops) when nobody listens; here each
 * subscriber has its own queue, nothing is built while nobody subscribes, and a subscriber
 * that goes away is forgotten.
 */
export class ContainerEvents {
  private readonly subscribers = new Set<Subscriber>();
  /** Events are built one after the other, so each subscriber sees them in the order they happened. */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly build: ContainerEventBuilder,
    private readonly log: CriLog,
    private readonly capacity = CONTAINER_EVENT_BUFFER,
  ) {}

  /**
   * A transition of a container, or of a pod (containerId = sandboxId, as containerd sends a
   * pause container's). Never waits and never throws: the call that made the transition goes on.
   */
  emit(containerId: string, sandboxId: string, type: ContainerEventType): void {
    if (this.subscribers.size === 0) return;
    const createdAt = Date.now() * 1_000_000;
    this.tail = this.tail.then(async () => {
      let ev: wire.cri.ContainerEventResponse;
      try {
        ev = await this.build(containerId, sandboxId, type, createdAt);
      } catch (e) {
        this.log.warn(`container event ${type} of ${containerId}: ${(e as Error).message}`);
        return;
      }
      for (const s of this.subscribers) s.offer(ev);
    });
  }

  /** Resolves once every event emitted so far has reached the subscribers' queues. */
  flushed(): Promise<void> {
    return this.tail;
  }

  /** The events from now on, until the signal aborts, the iteration stops or close(). */
  subscribe(signal?: AbortSignal): AsyncIterableIterator<wire.cri.ContainerEventResponse> {
    const sub = new Subscriber(this.capacity, this.log, (s) => this.subscribers.delete(s));
    this.subscribers.add(sub);
    if (signal) {
      if (signal.aborted) sub.close();
      else signal.addEventListener('abort', () => sub.close(), { once: true });
    }
    return {
      next: () => sub.next(),
      return: () => sub.return(),
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** How many subscribers there are, and how many events wait in each (for tests and logs). */
  stats(): { subscribers: number; waiting: number[] } {
    return { subscribers: this.subscribers.size, waiting: [...this.subscribers].map((s) => s.waiting) };
  }

  /** Ends every subscription (the daemon closes). */
  close(): void {
    for (const s of [...this.subscribers]) s.close();
  }
}
