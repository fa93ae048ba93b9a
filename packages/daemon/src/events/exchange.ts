import {
  type Context,
  decodeAny,
  type Envelope,
  type EventSubscriber,
  encodeAny,
  FailedPreconditionError,
  type FieldAdaptor,
  type Filter,
  InvalidArgumentError,
  isFailedPrecondition,
  type Publisher,
  parseFilters,
  preciseNow,
  requireNamespace,
  validateIdentifier,
} from '@berth/api';
import { type Logger, nullLogger } from '../log';

/** Checks a topic as containerd does: `/` followed by identifiers joined by `/`. */
export function validateTopic(topic: string): void {
  if (topic === '') throw new InvalidArgumentError(`envelope topic "${topic}": must not be empty`);
  if (!topic.startsWith('/'))
    throw new InvalidArgumentError(`envelope topic "${topic}": must start with '/'`);
  if (topic.length === 1)
    throw new InvalidArgumentError(`envelope topic "${topic}": must have at least one component`);
  for (const component of topic.slice(1).split('/')) {
    try {
      validateIdentifier(component);
    } catch (err) {
      throw new InvalidArgumentError(
        `envelope topic "${topic}": failed validation on component "${component}": ${(err as Error).message}`,
      );
    }
  }
}

const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Adapts a decoded event object: `event.<field>` (proto names), `event.labels.<key>`. */
function eventField(event: Record<string, unknown> | undefined, path: readonly string[]): string | undefined {
  let v: unknown = event;
  for (const [i, p] of path.entries()) {
    if (v === null || typeof v !== 'object') return undefined;
    const obj = v as Record<string, unknown>;
    // Map keys (labels.<key>) are taken literally; field names may come in proto snake_case.
    v = i > 0 && !(camel(p) in obj) ? obj[p] : (obj[camel(p)] ?? obj[p]);
  }
  if (v === undefined || v === null || typeof v === 'object') return undefined;
  const s = String(v);
  return s === '' ? undefined : s;
}

/** An envelope as the exchange keeps it: the decoded event rides along for filtering. */
export interface ExchangeEnvelope extends Envelope {
  readonly decoded?: Record<string, unknown>;
}

function adapt(env: ExchangeEnvelope): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'namespace':
        return env.namespace || undefined;
      case 'topic':
        return env.topic || undefined;
      case 'event':
        return eventField(env.decoded, path.slice(1));
      default:
        return undefined;
    }
  };
}

/** A live subscription: iterate it for envelopes; close() (or the signal) ends the iteration. */
export interface Subscription extends AsyncIterable<ExchangeEnvelope> {
  close(): void;
}

class Subscriber implements Subscription {
  private readonly queue: ExchangeEnvelope[] = [];
  private waiter: ((r: IteratorResult<ExchangeEnvelope>) => void) | undefined;
  closed = false;

  constructor(
    readonly filter: Filter,
    private readonly onClose: (s: Subscriber) => void,
  ) {}

  push(env: ExchangeEnvelope): void {
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: env, done: false });
    } else {
      this.queue.push(env);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<ExchangeEnvelope> {
    return {
      next: () => {
        const env = this.queue.shift();
        if (env) return Promise.resolve({ value: env, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiter = resolve;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/**
 * The in-process event bus (containerd's events/exchange): services publish typed events,
 * which are encoded as protobuf Any; subscribers receive every envelope their filters match.
 */
export class Exchange implements Publisher, EventSubscriber {
  private readonly subscribers = new Set<Subscriber>();

  constructor(private readonly log: Logger = nullLogger) {}

  /** Publishes `event` (a plain object of message `typeName`) under the namespace of ctx. */
  async publish(
    ctx: Context,
    topic: string,
    typeName: string,
    event: Record<string, unknown>,
  ): Promise<void> {
    let namespace: string;
    try {
      namespace = requireNamespace(ctx);
    } catch (err) {
      const msg = `failed publishing event: ${(err as Error).message}`;
      throw isFailedPrecondition(err) ? new FailedPreconditionError(msg) : new InvalidArgumentError(msg);
    }
    validateTopic(topic);
    const encoded = encodeAny(typeName, event);
    this.deliver({ timestamp: preciseNow(), namespace, topic, event: encoded, decoded: event });
  }

  /** Forwards an envelope published elsewhere (a shim, a remote publisher). */
  async forward(envelope: Envelope): Promise<void> {
    validateIdentifier(envelope.namespace);
    validateTopic(envelope.topic);
    if (!(envelope.timestamp instanceof Date) || Number.isNaN(envelope.timestamp.getTime())) {
      throw new InvalidArgumentError('timestamp must be set on forwarded event');
    }
    let decoded: Record<string, unknown> | undefined;
    if (this.subscribers.size > 0) {
      try {
        decoded = decodeAny(envelope.event);
      } catch {
        decoded = undefined; // an event type berth has no proto for still travels, unfilterable
      }
    }
    this.deliver({ ...envelope, decoded });
  }

  private deliver(env: ExchangeEnvelope): void {
    if (this.log.enabled('debug')) {
      this.log
        .with({ topic: env.topic, ns: env.namespace, type: env.event.typeUrl })
        .debug('event published');
    }
    const adaptor = adapt(env);
    for (const s of this.subscribers) if (s.filter.match(adaptor)) s.push(env);
  }

  /**
   * Subscribes to envelopes matching any of `filters` (containerd's filter syntax over
   * `topic`, `namespace`, `event.<field>`). InvalidArgument for a malformed filter.
   */
  subscribe(filters: readonly string[] = [], signal?: AbortSignal): Subscription {
    let filter: Filter;
    try {
      filter = parseFilters(filters);
    } catch (err) {
      throw new InvalidArgumentError(`failed parsing subscription filters: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const sub = new Subscriber(filter, (s) => this.subscribers.delete(s));
    this.subscribers.add(sub);
    if (signal) {
      if (signal.aborted) sub.close();
      else signal.addEventListener('abort', () => sub.close(), { once: true });
    }
    return sub;
  }

  /** Number of live subscriptions (for tests and introspection). */
  get subscriberCount(): number {
    return this.subscribers.size;
  }
}
