// Test fixtures for driving containerd-shim-berth-v1 directly over ttrpc: a busybox rootfs,
// OCI bundles, FIFOs read the way containerd's client reads them, an events sink standing
// in for the daemon, and cleanup of everything a test started (shims, containers, mounts).
import { execFileSync, spawn } from 'node:child_process';
import {
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeAny } from '@berth/api';
import { MNT, unmountAll } from '@berth/sys';
import { type ServiceClient, TtrpcClient, TtrpcServer } from '@berth/ttrpc';

export const repoRoot = resolve(__dirname, '..', '..', '..');
export const SHIM_BIN = join(repoRoot, 'bin', 'containerd-shim-berth-v1');
export const BUSYBOX = '/usr/bin/busybox';

export function requireBuilt(): void {
  if (!existsSync(join(repoRoot, 'packages', 'shim', 'dist', 'main.js'))) {
    throw new Error(
      'packages/shim/dist is missing: run `pnpm build` (the shim binary runs the built package)',
    );
  }
}

/** A rootfs with a static busybox and a symlink per applet (`busybox --install -s` makes absolute links). */
export function makeRootfs(dir: string): string {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(BUSYBOX, join(rootfs, 'bin', 'busybox'));
  execFileSync('chmod', ['755', join(rootfs, 'bin', 'busybox')]);
  const applets = execFileSync(BUSYBOX, ['--list'])
    .toString()
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(rootfs, 'bin', a));
  return rootfs;
}

export interface SpecOptions {
  args: string[];
  /** Absolute path of the root filesystem; default: the bundle's ./rootfs (for rootfs mounts). */
  root?: string;
  terminal?: boolean;
  /** Share the host's pid namespace (processes outlive init: the shim must kill and reap them). */
  hostPid?: boolean;
  memoryLimit?: number;
  annotations?: Record<string, string>;
}

/** An OCI bundle: `runc spec`'s defaults with our process, root and extras. */
export function makeBundle(dir: string, opts: SpecOptions): string {
  mkdirSync(dir, { recursive: true });
  execFileSync('runc', ['spec', '--bundle', dir]);
  const file = join(dir, 'config.json');
  const spec = JSON.parse(readFileSync(file, 'utf8'));
  spec.process.terminal = opts.terminal === true;
  spec.process.args = opts.args;
  spec.root = { path: opts.root ?? 'rootfs', readonly: true };
  if (opts.hostPid)
    spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'pid');
  if (opts.memoryLimit)
    spec.linux.resources = {
      ...spec.linux.resources,
      memory: { limit: opts.memoryLimit, swap: opts.memoryLimit },
    };
  if (opts.annotations) spec.annotations = opts.annotations;
  writeFileSync(file, JSON.stringify(spec, null, 1));
  return dir;
}

/** A FIFO read like containerd's cio reads it (opened before Create, non-blocking). */
export class FifoReader {
  readonly path: string;
  private readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  readonly ended: Promise<void>;

  private timer: NodeJS.Timeout | undefined;

  /** With `everyMs`, reads one chunk that often (a client slower than the container). */
  constructor(path: string, opts: { everyMs?: number } = {}) {
    this.path = path;
    execFileSync('mkfifo', [path]);
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.on('data', (b: Buffer) => {
      this.chunks.push(b);
      if (opts.everyMs !== undefined) this.socket.pause();
    });
    if (opts.everyMs !== undefined) {
      this.socket.pause();
      this.timer = setInterval(() => this.socket.resume(), opts.everyMs);
    }
    this.ended = new Promise((r) =>
      this.socket.once('end', () => {
        clearInterval(this.timer);
        r();
      }),
    );
    this.socket.on('error', () => {});
  }

  text(): string {
    return Buffer.concat(this.chunks).toString();
  }

  /** Bytes taken from the FIFO so far (a paused reader's buffered ones included). */
  length(): number {
    let n = this.socket.readableLength;
    for (const c of this.chunks) n += c.length;
    return n;
  }

  async waitFor(pattern: RegExp | string, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const t = this.text();
      if (typeof pattern === 'string' ? t.includes(pattern) : pattern.test(t)) return t;
      if (Date.now() > deadline) throw new Error(`${this.path}: ${pattern} not seen in ${JSON.stringify(t)}`);
      await sleep(20);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.socket.destroy();
  }
}

/** The writing side of a stdin FIFO, as a client holds it. */
export class FifoWriter {
  readonly path: string;
  private socket: net.Socket | undefined;

  constructor(path: string) {
    this.path = path;
    execFileSync('mkfifo', [path]);
  }

  /** Opens the FIFO for writing (after the shim opened its read end, i.e. after Create/Start). */
  open(): void {
    const fd = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK);
    this.socket = new net.Socket({ fd, readable: false, writable: true });
    this.socket.on('error', () => {});
  }

  write(data: string): Promise<void> {
    return new Promise((r) => this.socket!.write(data, () => r()));
  }

  close(): void {
    this.socket?.end();
    this.socket?.destroy();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface EventRecord {
  topic: string;
  namespace: string;
  typeUrl: string;
  event: Record<string, any>;
}

/** Stands in for the daemon's ttrpc events endpoint (`<address>.ttrpc`). */
export class EventSink {
  readonly events: EventRecord[] = [];
  private readonly listeners: ((e: EventRecord) => void)[] = [];
  private server = new TtrpcServer();

  constructor(readonly path: string) {
    this.server.register('containerd.services.events.ttrpc.v1.Events', {
      Forward: (req: any) => {
        const e = req.envelope;
        const record = {
          topic: e.topic,
          namespace: e.namespace,
          typeUrl: e.event.typeUrl,
          event: decodeAny(e.event),
        };
        this.events.push(record);
        for (const l of this.listeners) l(record);
        return {};
      },
    });
  }

  /** Calls fn with every event as it arrives (in the same turn). */
  onEvent(fn: (e: EventRecord) => void): void {
    this.listeners.push(fn);
  }

  listen(): Promise<void> {
    return this.server.listen(this.path);
  }

  topics(containerId?: string): string[] {
    return this.events
      .filter((e) => containerId === undefined || e.event.containerId === containerId)
      .map((e) => e.topic);
  }

  async waitFor(topic: string, containerId?: string, timeoutMs = 10_000): Promise<EventRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find(
        (x) => x.topic === topic && (containerId === undefined || x.event.containerId === containerId),
      );
      if (e) return e;
      if (Date.now() > deadline)
        throw new Error(`event ${topic} not seen; got ${JSON.stringify(this.topics())}`);
      await sleep(20);
    }
  }

  close(): Promise<void> {
    return this.server.close({ timeoutMs: 1000 });
  }
}

export interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export function runShim(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: Buffer } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [SHIM_BIN, ...args], {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b;
    });
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }),
    );
    child.stdin.end(opts.input);
  });
}

/**
 * One test's world: temp dirs, an events sink, an isolated runtime root and socket dir,
 * and the list of what to tear down.
 */
export class World {
  readonly dir: string;
  readonly socketDir: string;
  readonly runtimeRoot: string;
  readonly events: EventSink;
  readonly daemonAddress: string;
  readonly env: NodeJS.ProcessEnv;
  private readonly clients: TtrpcClient[] = [];
  private readonly readers: (FifoReader | FifoWriter)[] = [];
  private readonly bundles: string[] = [];
  readonly shimPids = new Set<number>();

  constructor(rootfs: string, extraEnv: NodeJS.ProcessEnv = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'berth-shim-'));
    this.rootfs = rootfs;
    this.socketDir = join(this.dir, 's');
    this.runtimeRoot = join(this.dir, 'runc');
    this.daemonAddress = join(this.dir, 'daemon.sock');
    this.events = new EventSink(`${this.daemonAddress}.ttrpc`);
    this.env = {
      ...process.env,
      TTRPC_ADDRESS: `${this.daemonAddress}.ttrpc`,
      BERTH_SHIM_SOCKET_DIR: this.socketDir,
      BERTH_SHIM_RUNTIME_ROOT: this.runtimeRoot,
      ...extraEnv,
    };
  }

  readonly rootfs: string;

  async init(): Promise<this> {
    await this.events.listen();
    return this;
  }

  bundle(id: string, opts: SpecOptions): string {
    const dir = join(this.dir, 'bundles', id);
    makeBundle(dir, { root: this.rootfs, ...opts });
    this.bundles.push(dir);
    return dir;
  }

  reader(name: string, opts: { everyMs?: number } = {}): FifoReader {
    const r = new FifoReader(join(this.dir, name), opts);
    this.readers.push(r);
    return r;
  }

  writer(name: string): FifoWriter {
    const w = new FifoWriter(join(this.dir, name));
    this.readers.push(w);
    return w;
  }

  /** Runs `start` for a container and connects to the address it prints. */
  async start(
    id: string,
    bundle: string,
    namespace = 'testns',
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ address: string; task: ServiceClient; client: TtrpcClient }> {
    const res = await runShim(['-namespace', namespace, '-id', id, '-address', this.daemonAddress, 'start'], {
      cwd: bundle,
      env: { ...this.env, ...env },
    });
    if (res.code !== 0) throw new Error(`shim start failed (${res.code}): ${res.stderr}`);
    const address = res.stdout.toString();
    const client = await TtrpcClient.connect(address, { timeoutMs: 10_000 });
    this.clients.push(client);
    const task = client.service('containerd.task.v2.Task');
    const { shimPid } = await task.Connect({ id }, { namespace });
    this.shimPids.add(shimPid);
    return { address, task, client };
  }

  /** Stops what the test started: clients, shims (by pid), runc containers, mounts, dirs. */
  async dispose(): Promise<void> {
    for (const c of this.clients) await c.close();
    for (const r of this.readers) r.close();
    for (const pid of this.shimPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (existsSync(this.runtimeRoot)) {
      for (const ns of readdirSync(this.runtimeRoot)) {
        const root = join(this.runtimeRoot, ns);
        for (const id of readdirSync(root)) {
          try {
            execFileSync('runc', ['--root', root, 'delete', '--force', id], { stdio: 'ignore' });
          } catch {
            // already gone
          }
        }
      }
    }
    for (const b of this.bundles) await unmountAll(join(b, 'rootfs'), MNT.DETACH).catch(() => {});
    await this.events.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether a process is alive (not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Children of pid that are zombies. */
export function zombieChildren(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === 'Z' && Number(rest[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export async function waitUntil(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

/** The OCI process spec of an exec, as containerd packs it into an Any. */
export function processSpec(
  args: string[],
  extra: Record<string, unknown> = {},
): { typeUrl: string; value: Buffer } {
  return {
    typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process',
    value: Buffer.from(
      JSON.stringify({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, ...extra }),
    ),
  };
}
