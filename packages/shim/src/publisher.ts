/**
 * Task events to the daemon: containerd.services.events.ttrpc.v1.Events/Forward on the
 * daemon's ttrpc socket (TTRPC_ADDRESS), in order. A failed forward is retried with a
 * growing pause (the daemon may be restarting), then dropped, as containerd's shims do.
 */
import { encodeAny } from '@berth/api';
import { TtrpcClient } from '@berth/ttrpc';
import type { Logger } from './log';
import { type Timestamp, timestampNow } from './time';

export const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

export interface EventSink {
  publish(namespace: string, topic: string, typeName: string, event: Record<string, unknown>): void;
}

export const TOPICS = {
  create: '/tasks/create',
  start: '/tasks/start',
  exit: '/tasks/exit',
  delete: '/tasks/delete',
  execAdded: '/tasks/exec-added',
  execStarted: '/tasks/exec-started',
  paused: '/tasks/paused',
  resumed: '/tasks/resumed',
  oom: '/tasks/oom',
} as const;

interface Queued {
  timestamp: Timestamp;
  namespace: string;
  topic: string;
  typeName: string;
  event: Record<string, unknown>;
  attempts: number;
}

export interface PublisherOptions {
  /** Attempts before an event is dropped. */
  maxAttempts?: number;
  /** Pause before retry n is n times this. */
  retryDelayMs?: number;
}

export class Publisher implements EventSink {
  private readonly queue: Queued[] = [];
  private pumping: Promise<void> | undefined;
  private client: TtrpcClient | undefined;
  private closed = false;
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;
  /** Events given up on after every attempt failed. */
  dropped = 0;

  constructor(
    private readonly address: string | undefined,
    private readonly log: Logger,
    options: PublisherOptions = {},
  ) {
    this.maxAttempts = options.maxAttempts ?? 6;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
  }

  publish(namespace: string, topic: string, typeName: string, event: Record<string, unknown>): void {
    this.log.debug('event', { topic, namespace });
    if (!this.address || this.closed) return;
    this.queue.push({ timestamp: timestampNow(), namespace, topic, typeName, event, attempts: 0 });
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
    });
  }

  /** Resolves when every queued event was sent or dropped, or after timeoutMs. */
  async drain(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      (async () => {
        while (this.pumping) await this.pumping;
      })(),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    await this.client?.close();
    this.client = undefined;
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const item = this.queue[0];
      try {
        await this.forward(item);
        this.queue.shift();
      } catch (err) {
        item.attempts++;
        this.client?.close();
        this.client = undefined;
        if (item.attempts >= this.maxAttempts) {
          this.log.error('dropping event after repeated failures', { topic: item.topic, error: err });
          this.queue.shift();
          this.dropped++;
          continue;
        }
        this.log.warn('forward event', { topic: item.topic, error: err });
        await new Promise((r) => setTimeout(r, this.retryDelayMs * item.attempts));
      }
    }
  }

  private async forward(item: Queued): Promise<void> {
    if (this.client === undefined || this.client.closed) {
      this.client = await TtrpcClient.connect(this.address!, { timeoutMs: 5000 });
    }
    await this.client.call(
      EVENTS_SERVICE,
      'Forward',
      {
        envelope: {
          timestamp: item.timestamp,
          namespace: item.namespace,
          topic: item.topic,
          event: encodeAny(`containerd.events.${item.typeName}`, item.event),
        },
      },
      { timeoutMs: 5000, namespace: item.namespace },
    );
  }
}
