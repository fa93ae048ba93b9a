import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import {
  anyFromWire,
  type Envelope,
  fromTimestamp,
  InvalidArgumentError,
  unlinkQuiet,
  type wire,
} from '@berth/api';
import { socketPath, TtrpcServer } from '@berth/ttrpc';
import { type Logger, nullLogger } from '../log';

export const TTRPC_EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

/** Where shims forward their events: berthd's gRPC address with `.ttrpc` appended, as containerd. */
export const ttrpcAddressOf = (grpcAddress: string): string => `${socketPath(grpcAddress)}.ttrpc`;

/** Where forwarded envelopes go (the exchange). */
export interface Forwarder {
  forward(envelope: Envelope): Promise<void>;
}

/**
 * berthd's ttrpc socket: containerd.services.events.ttrpc.v1.Events/Forward, which shims
 * call for every task event (`/tasks/create`, `/tasks/exit`, ...). Envelopes go into the
 * exchange as they are, so Subscribe sees the shim's events unchanged.
 */
export class ShimEventsServer {
  private readonly server: TtrpcServer;
  private readonly observers = new Set<(envelope: Envelope) => void>();
  private path: string | undefined;

  constructor(
    private readonly events: Forwarder,
    private readonly log: Logger = nullLogger,
  ) {
    this.server = new TtrpcServer({
      onError: (err) => this.log.with({ error: err.message }).warn('ttrpc server error'),
    });
    this.server.register(TTRPC_EVENTS_SERVICE, {
      Forward: async (req: wire.ttrpcEvents.ForwardRequest) => {
        const envelope = toEnvelope(req);
        await this.events.forward(envelope);
        for (const observe of this.observers) observe(envelope);
        return {};
      },
    });
  }

  /** Sees every envelope a shim forwards, after the exchange took it (the task manager learns exits so). */
  observe(fn: (envelope: Envelope) => void): () => void {
    this.observers.add(fn);
    return () => this.observers.delete(fn);
  }

  /** Listens on `address` (0660, a stale socket replaced); AlreadyExists if something serves there. */
  async listen(address: string): Promise<void> {
    // The directory is shared with the gRPC socket: 0711, as containerd makes it.
    await fs.mkdir(dirname(socketPath(address)), { recursive: true, mode: 0o711 });
    await this.server.listen(address, { mode: 0o660 });
    this.path = socketPath(address);
  }

  /** Stops listening, lets in-flight forwards finish, removes the socket. */
  async close(): Promise<void> {
    await this.server.close({ timeoutMs: 1000 });
    if (this.path) unlinkQuiet(this.path);
  }
}

function toEnvelope(req: wire.ttrpcEvents.ForwardRequest): Envelope {
  const env = req.envelope;
  if (!env) throw new InvalidArgumentError('forward: envelope must be set');
  if (!env.timestamp) throw new InvalidArgumentError(`forward ${env.topic}: timestamp must be set`);
  // containerd's exchange checks namespace, topic and timestamp, never the event: an empty
  // Any is forwarded as it is and subscribers get it empty. An envelope with no event at all
  // crashes containerd 1.6 (a nil Any in its log line); berth forwards it as an empty Any.
  return {
    timestamp: fromTimestamp(env.timestamp),
    namespace: env.namespace,
    topic: env.topic,
    event: anyFromWire(env.event) ?? { typeUrl: '', value: Buffer.alloc(0) },
  };
}
