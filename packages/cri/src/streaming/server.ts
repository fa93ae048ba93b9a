import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Duplex, PassThrough, Writable } from 'node:stream';
import { InvalidArgumentError, type wire } from '@berth/api';
import type { WebSocket } from 'ws';
import {
  errorStatus,
  exitStatusJson,
  headerValues,
  negotiate,
  PORT_FORWARD_PROTOCOL,
  type RemoteIo,
  ResizeDecoder,
  ResizeQueue,
  SPDY_REMOTE_COMMAND_PROTOCOLS,
  WS_PORT_FORWARD_PROTOCOL,
  WS_REMOTE_COMMAND_PROTOCOLS,
} from './protocol';
import type { StreamingRuntime } from './runtime';
import { SpdySession, type SpdyStream } from './spdy';
import { TOKEN_TTL_MS, TokenCache } from './tokens';

/** The kubelet's: a client has this long to open the streams it announced. */
const STREAM_CREATION_TIMEOUT_MS = 30_000;

type Pending =
  | { kind: 'exec'; req: wire.cri.ExecRequest }
  | { kind: 'attach'; req: wire.cri.AttachRequest }
  | { kind: 'portforward'; req: wire.cri.PortForwardRequest };

export interface StreamServerOptions {
  address: string;
  /** 0: any free port. */
  port: number;
  tokenTtlMs?: number;
  maxInFlight?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Validation the kubelet's streaming server makes of Exec and Attach requests. */
function checkIoRequest(r: {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}) {
  if (!r.containerId) throw new InvalidArgumentError('missing required container_id');
  // A terminal has one output stream: there is no stderr to multiplex.
  if (r.tty && r.stderr) throw new InvalidArgumentError('tty and stderr cannot both be true');
  if (!r.stdin && !r.stdout && !r.stderr)
    throw new InvalidArgumentError('one of stdin, stdout, or stderr must be set');
}

/**
 * The CRI streaming server, as the kubelet's (k8s.io/kubelet/pkg/cri/streaming): Exec,
 * Attach and PortForward hand out `http://ADDR:PORT/{exec,attach,portforward}/<token>`;
 * the client brings the token back within a minute, once, and upgrades the connection to
 * SPDY/3.1 or WebSocket.
 */
export class StreamServer {
  private readonly tokens: TokenCache<Pending>;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private base = '';

  constructor(
    private readonly runtime: StreamingRuntime,
    private readonly opts: StreamServerOptions,
  ) {
    this.tokens = new TokenCache(opts.tokenTtlMs ?? TOKEN_TTL_MS, opts.maxInFlight);
  }

  /** `http://host:port`, once started. */
  get url(): string {
    return this.base;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.address || undefined, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const { port } = server.address() as AddressInfo;
    this.base = `http://${urlHost(this.opts.address)}:${port}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  exec(req: wire.cri.ExecRequest): wire.cri.ExecResponse {
    checkIoRequest(req);
    if (!req.cmd || req.cmd.length === 0) throw new InvalidArgumentError('exec command must not be empty');
    return { url: this.register({ kind: 'exec', req }) };
  }

  attach(req: wire.cri.AttachRequest): wire.cri.AttachResponse {
    checkIoRequest({ ...req, tty: req.tty });
    return { url: this.register({ kind: 'attach', req }) };
  }

  portForward(req: wire.cri.PortForwardRequest): wire.cri.PortForwardResponse {
    if (!req.podSandboxId) throw new InvalidArgumentError('missing required pod_sandbox_id');
    return { url: this.register({ kind: 'portforward', req }) };
  }

  private register(p: Pending): string {
    if (!this.server) throw new InvalidArgumentError('the streaming server is not running');
    return `${this.base}/${p.kind}/${this.tokens.insert(p)}`;
  }

  /** The pending request a path names, consumed; undefined (and a 404 answered) otherwise. */
  private take(url: string | undefined): Pending | undefined {
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)(?:\?.*)?$/.exec(url ?? '');
    if (!m) return undefined;
    const p = this.tokens.consume(m[2]);
    return p && p.kind === m[1] ? p : undefined;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const p = this.take(req.url);
    if (!p) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('404 page not found\n');
      return;
    }
    res
      .writeHead(400, { 'Content-Type': 'text/plain' })
      .end('unable to upgrade: missing upgrade headers in request\n');
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => {});
    const p = this.take(req.url);
    if (!p) {
      refuse(socket, 404, '404 page not found\n');
      return;
    }
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') {
      this.onWebSocket(req, socket, head, p);
      return;
    }
    if (upgrade !== 'spdy/3.1') {
      refuse(
        socket,
        400,
        `unable to upgrade: upgrade "${req.headers.upgrade}" is not SPDY/3.1 or websocket\n`,
      );
      return;
    }
    const server = p.kind === 'portforward' ? [PORT_FORWARD_PROTOCOL] : SPDY_REMOTE_COMMAND_PROTOCOLS;
    const client = headerValues(req.headers['x-stream-protocol-version']);
    const protocol = negotiate(client, server);
    if (protocol === undefined) {
      refuse(
        socket,
        403,
        `unable to upgrade: unable to negotiate protocol: client supports [${client.join(' ')}], server accepts [${server.join(' ')}]\n`,
        { 'X-Accepted-Stream-Protocol-Versions': server.join(', ') },
      );
      return;
    }
    const chosen = protocol || (p.kind === 'portforward' ? PORT_FORWARD_PROTOCOL : 'channel.k8s.io');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
        `X-Stream-Protocol-Version: ${chosen}\r\n\r\n`,
    );
    if (head.length > 0) socket.unshift(head);
    const session = new SpdySession(socket);
    if (p.kind === 'portforward') this.spdyPortForward(session, p.req);
    else this.spdyRemoteCommand(session, p, chosen);
  }

  private spdyRemoteCommand(
    session: SpdySession,
    p: Pending & { kind: 'exec' | 'attach' },
    protocol: string,
  ): void {
    const r = p.req;
    const expected = new Set(['error']);
    if (r.stdin) expected.add('stdin');
    if (r.stdout) expected.add('stdout');
    if (r.stderr && !r.tty) expected.add('stderr');
    if (r.tty && (protocol === 'v3.channel.k8s.io' || protocol === 'v4.channel.k8s.io'))
      expected.add('resize');
    const streams = new Map<string, SpdyStream>();
    const abort = new AbortController();
    session.once('close', () => abort.abort());
    const timer = setTimeout(() => {
      this.opts.log?.('streaming: timed out waiting for the client to create streams', { kind: p.kind });
      void session.close();
    }, STREAM_CREATION_TIMEOUT_MS);
    timer.unref();
    const onStream = (s: SpdyStream) => {
      const type = s.header('streamType');
      streams.set(type, s);
      if (type === 'error') s.resume(); // nothing is read from it
      if ([...expected].every((t) => streams.has(t))) {
        clearTimeout(timer);
        session.off('stream', onStream);
        void this.runRemoteCommand(p, protocol, streams, abort.signal).finally(() => session.close());
      }
    };
    session.on('stream', onStream);
  }

  private async runRemoteCommand(
    p: Pending & { kind: 'exec' | 'attach' },
    protocol: string,
    streams: Map<string, Duplex>,
    signal: AbortSignal,
  ): Promise<void> {
    const resizes = new ResizeQueue();
    const resize = streams.get('resize');
    if (resize) {
      const dec = new ResizeDecoder((s) => resizes.push(s));
      resize.on('data', (d: Buffer) => dec.push(d));
    }
    const io: RemoteIo = {
      stdin: p.req.stdin ? streams.get('stdin') : undefined,
      stdout: streams.get('stdout'),
      stderr: p.req.tty ? undefined : streams.get('stderr'),
      tty: p.req.tty,
      onResize: (h) => resizes.onResize(h),
      signal,
    };
    const errStream = streams.get('error')!;
    try {
      if (p.kind === 'exec') {
        const code = await this.runtime.exec(p.req, io);
        if (protocol === 'v4.channel.k8s.io') errStream.write(exitStatusJson(code, p.req.cmd));
        else if (code !== 0) errStream.write(`command '${p.req.cmd.join(' ')}' exited with ${code}`);
      } else {
        await this.runtime.attach(p.req, io);
        if (protocol === 'v4.channel.k8s.io') errStream.write(exitStatusJson(0));
      }
    } catch (e) {
      errStream.write(errorStatus(protocol, (e as Error).message));
    }
    // Every stream half-closed (FIN) before the session's GOAWAY, so the client reads to the end.
    await Promise.all([...streams.values()].map((s) => new Promise<void>((r) => s.end(() => r()))));
  }

  private spdyPortForward(session: SpdySession, req: wire.cri.PortForwardRequest): void {
    const pairs = new Map<string, { data?: SpdyStream; error?: SpdyStream }>();
    session.on('stream', (s: SpdyStream) => {
      const type = s.header('streamType');
      // Old clients send no requestID: the pair is told by stream ids (data = error + 2).
      const id = s.header('requestID') || String(type === 'data' ? s.id - 2 : s.id);
      if (type !== 'data' && type !== 'error') {
        s.destroy();
        return;
      }
      const pair = pairs.get(id) ?? {};
      pairs.set(id, pair);
      pair[type] = s;
      if (type === 'error') s.resume();
      if (!pair.data || !pair.error) return;
      pairs.delete(id);
      const { data, error } = pair;
      const portText = data.header('port');
      const port = Number(portText);
      const fail = (msg: string) => {
        error.end(`error forwarding port ${portText} to pod ${req.podSandboxId}: ${msg}`);
        data.end();
      };
      if (!/^\d+$/.test(portText) || port <= 0 || port > 65535) {
        fail(`invalid port "${portText}"`);
        return;
      }
      this.runtime.portForward(req.podSandboxId, port, data).then(
        () => {
          error.end();
          if (!data.writableEnded) data.end();
        },
        (e) => fail((e as Error).message),
      );
    });
  }

  private onWebSocket(req: IncomingMessage, socket: Socket, head: Buffer, p: Pending): void {
    const offered = headerValues(req.headers['sec-websocket-protocol']);
    const server = p.kind === 'portforward' ? [WS_PORT_FORWARD_PROTOCOL] : WS_REMOTE_COMMAND_PROTOCOLS;
    const protocol = negotiate(offered, server);
    if (!protocol) {
      refuse(
        socket,
        400,
        `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], server accepts [${server.join(' ')}]\n`,
      );
      return;
    }
    // ws is loaded with the first WebSocket client (~1 MiB of heap berthd need not hold before).
    const { WebSocketServer } = require('ws') as typeof import('ws');
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: () => protocol,
    });
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (p.kind === 'portforward') this.wsPortForward(ws, req, p.req);
      else void this.wsRemoteCommand(ws, p, protocol);
    });
  }

  private async wsRemoteCommand(ws: WebSocket, p: Pending & { kind: 'exec' | 'attach' }, protocol: string) {
    const abort = new AbortController();
    ws.once('close', () => abort.abort());
    const channel = (n: number) =>
      new Writable({
        write(chunk: Buffer, _e, cb) {
          if (ws.readyState !== ws.OPEN) return cb();
          ws.send(Buffer.concat([Buffer.from([n]), chunk]), { binary: true }, () => cb());
        },
      });
    const stdin = p.req.stdin ? new PassThrough() : undefined;
    const resizes = new ResizeQueue();
    const dec = new ResizeDecoder((s) => resizes.push(s));
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      const data = isBinary ? raw : Buffer.from(raw.toString());
      if (data.length === 0) return;
      const ch = data[0];
      const body = data.subarray(1);
      if (ch === 0) stdin?.write(body);
      else if (ch === 4) dec.push(body);
      else if (ch === 255 && body[0] === 0) stdin?.end(); // v5: the client closed its stdin
    });
    ws.once('close', () => stdin?.end());
    const io: RemoteIo = {
      stdin,
      stdout: p.req.stdout ? channel(1) : undefined,
      stderr: p.req.stderr && !p.req.tty ? channel(2) : undefined,
      tty: p.req.tty,
      onResize: (h) => resizes.onResize(h),
      signal: abort.signal,
    };
    let status: string;
    try {
      if (p.kind === 'exec') status = exitStatusJson(await this.runtime.exec(p.req, io), p.req.cmd);
      else {
        await this.runtime.attach(p.req, io);
        status = exitStatusJson(0);
      }
    } catch (e) {
      status = errorStatus(protocol, (e as Error).message);
    }
    if (ws.readyState === ws.OPEN)
      ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(status)]), { binary: true });
    ws.close(1000);
  }

  /**
   * Port-forward over WebSocket: `?ports=80,8080`; per port i, channel 2i carries data and
   * 2i+1 errors, each first sending the port as two bytes, little endian.
   */
  private wsPortForward(ws: WebSocket, req: IncomingMessage, pf: wire.cri.PortForwardRequest): void {
    const params = new URL(req.url ?? '', 'http://x').searchParams;
    const ports = params
      .getAll('ports')
      .flatMap((v) => v.split(','))
      .filter(Boolean)
      .map(Number);
    const send = (ch: number, data: Buffer) => {
      if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([ch]), data]), { binary: true });
    };
    const inputs: PassThrough[] = [];
    ports.forEach((port, i) => {
      const portBytes = Buffer.alloc(2);
      portBytes.writeUInt16LE(port & 0xffff);
      send(2 * i, portBytes);
      send(2 * i + 1, portBytes);
      const input = new PassThrough();
      inputs.push(input);
      const output = new Writable({
        write(chunk: Buffer, _e, cb) {
          send(2 * i, chunk);
          cb();
        },
      });
      const duplex = new DuplexPair(input, output);
      this.runtime
        .portForward(pf.podSandboxId, port, duplex)
        .catch((e) =>
          send(
            2 * i + 1,
            Buffer.from(`error forwarding port ${port} to pod ${pf.podSandboxId}: ${(e as Error).message}`),
          ),
        );
    });
    ws.on('message', (raw: Buffer) => {
      if (raw.length === 0) return;
      const ch = raw[0];
      if (ch % 2 === 0) inputs[ch / 2]?.write(raw.subarray(1));
    });
    ws.once('close', () => {
      for (const i of inputs) i.end();
    });
  }
}

/** A Duplex reading from one stream and writing to another (a WebSocket channel pair). */
class DuplexPair extends Duplex {
  constructor(
    private readonly input: PassThrough,
    private readonly output: Writable,
  ) {
    super({ allowHalfOpen: true });
    input.on('data', (d: Buffer) => {
      if (!this.push(d)) input.pause();
    });
    input.once('end', () => this.push(null));
  }
  override _read(): void {
    this.input.resume();
  }
  override _write(chunk: Buffer, enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.output.write(chunk, enc, cb);
  }
  override _final(cb: () => void): void {
    cb();
  }
}

function refuse(socket: Duplex, code: number, body: string, headers: Record<string, string> = {}): void {
  const reason = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found' }[code] ?? 'Error';
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${code} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** The host part of the URLs handed out: an unspecified address becomes the node's first address. */
function urlHost(address: string): string {
  let host = address;
  if (host === '' || host === '0.0.0.0' || host === '::') {
    const ipv4 = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && !a.internal && a.family === 'IPv4');
    host = ipv4?.address ?? '127.0.0.1';
  }
  return host.includes(':') ? `[${host}]` : host;
}
