import type { Readable, Writable } from 'node:stream';

/** Remote-command subprotocols over SPDY, the kubelet's order of preference. */
export const SPDY_REMOTE_COMMAND_PROTOCOLS = [
  'v4.channel.k8s.io',
  'v3.channel.k8s.io',
  'v2.channel.k8s.io',
  'channel.k8s.io',
];
/** Remote-command subprotocols over WebSocket (channel byte first in each message). */
export const WS_REMOTE_COMMAND_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
export const PORT_FORWARD_PROTOCOL = 'portforward.k8s.io';
export const WS_PORT_FORWARD_PROTOCOL = 'v4.channel.k8s.io';

export interface TermSize {
  width: number;
  height: number;
}

/** The client's side of a remote command: whichever streams it asked for. */
export interface RemoteIo {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  tty: boolean;
  /** Terminal sizes as the client sends them; call once with the handler. */
  onResize(handler: (size: TermSize) => void): void;
  /** Aborted when the client went away. */
  signal: AbortSignal;
}

/**
 * The client's choice, as httpstream.Handshake: the first protocol the client lists that the
 * server speaks; '' when the client lists none (legacy clients); undefined when none is common.
 */
export function negotiate(client: string[], server: string[]): string | undefined {
  if (client.length === 0) return '';
  return client.find((p) => server.includes(p));
}

/** Header values as Go clients send them: repeated headers, or comma-separated in one. */
export function headerValues(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean);
}

/** metav1.Status for the v4 error stream: Success, or the exit code as the kubelet reports it. */
export function exitStatusJson(code: number, cmd: string[] = []): string {
  if (code === 0) return JSON.stringify({ metadata: {}, status: 'Success' });
  return JSON.stringify({
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${cmd.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  });
}

/** metav1.Status for an error that is not an exit code (v4), or its text (v1-v3). */
export function errorStatus(protocol: string, message: string): string {
  if (protocol === 'v4.channel.k8s.io' || protocol === 'v5.channel.k8s.io')
    return JSON.stringify({ metadata: {}, status: 'Failure', message, reason: 'InternalError', code: 500 });
  return message;
}

/** Splits the resize stream's concatenated JSON objects ({"Width":80,"Height":24}). */
export class ResizeDecoder {
  private text = '';

  constructor(private readonly onSize: (s: TermSize) => void) {}

  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    for (;;) {
      const start = this.text.indexOf('{');
      if (start < 0) {
        this.text = '';
        return;
      }
      const end = this.text.indexOf('}', start);
      if (end < 0) {
        this.text = this.text.slice(start);
        return;
      }
      const obj = this.text.slice(start, end + 1);
      this.text = this.text.slice(end + 1);
      try {
        const v = JSON.parse(obj) as { Width?: number; Height?: number };
        const width = Number(v.Width ?? 0);
        const height = Number(v.Height ?? 0);
        if (width > 0 && height > 0) this.onSize({ width, height });
      } catch {
        // A malformed size is dropped, as the kubelet logs and goes on.
      }
    }
  }
}

/** Calls the handler once it is set; sizes that arrived before wait (the last one counts). */
export class ResizeQueue {
  private handler?: (s: TermSize) => void;
  private pending?: TermSize;

  push(size: TermSize): void {
    if (this.handler) this.handler(size);
    else this.pending = size;
  }

  onResize(handler: (s: TermSize) => void): void {
    this.handler = handler;
    if (this.pending) handler(this.pending);
    this.pending = undefined;
  }
}
