/**
 * Our client and server against a real peer: Debian's containerd-shim-runc-v2 (Go ttrpc).
 * The shim is started the way containerd 1.6 starts it (runtime/v2/binary.go and
 * shim/util.go): `-namespace -address -publish-binary -id <id> start` run in the bundle
 * directory, TTRPC_ADDRESS naming where it forwards events, a `log` fifo in the bundle
 * held open by the parent; `start` prints the address of the shim's socket.
 * Needs root, runc and the containerd package. BERTH_SHIM_LOG=1 prints the shims' logs.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeAny, NotFoundError, UnavailableError } from '@berth/api';
import { socketPath, type TtrpcCallContext, TtrpcClient, TtrpcServer } from '../src';

const SHIM = '/usr/bin/containerd-shim-runc-v2';
const BUSYBOX = '/bin/busybox';
const TASK = 'containerd.task.v2.Task';
const EVENTS = 'containerd.services.events.ttrpc.v1.Events';
const NS = 'berth-ttrpc-test';

const runnable = fs.existsSync(SHIM) && process.getuid?.() === 0;
const describeShim = runnable ? describe : describe.skip;

interface ForwardedEvent {
  namespace: string;
  topic: string;
  event: Record<string, any>;
}

/** A process is gone once /proc has no entry for it or it is a zombie nobody reaped. */
function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Shim processes started for this id (their argv carries our namespace and id). */
function shimPidsFor(id: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('containerd-shim-runc-v2') && argv.includes(NS) && argv.includes(id)) {
        pids.push(Number(entry));
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function waitFor(what: string, check: () => boolean, limitMs = 20_000): Promise<void> {
  const until = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describeShim('containerd-shim-runc-v2 over ttrpc', () => {
  let dir: string;
  let address: string;
  let events: TtrpcServer;
  const forwarded: ForwardedEvent[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ttrpc-shim-'));
    address = path.join(dir, 'berth.sock');
    // What a shim dials to forward its events: the daemon's `<address>.ttrpc`.
    events = new TtrpcServer();
    events.register(EVENTS, {
      Forward: (req: any, ctx: TtrpcCallContext) => {
        const { envelope } = req;
        forwarded.push({
          namespace: ctx.namespace ?? envelope.namespace,
          topic: envelope.topic,
          event: decodeAny(envelope.event),
        });
        return {};
      },
    });
    await events.listen(`${address}.ttrpc`);
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  afterAll(async () => {
    await events?.close({ timeoutMs: 2000 });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    // runc's state root for our namespace, empty once the task is deleted.
    try {
      fs.rmdirSync(`/run/containerd/runc/${NS}`);
    } catch {
      // absent, or not empty: then something else is there and stays
    }
  });

  /** Makes a bundle, runs `start`, connects. Registers cleanup that leaves nothing behind. */
  async function startShim(
    id: string,
    spec: object,
  ): Promise<{ client: TtrpcClient; bundle: string; address: string }> {
    const bundle = path.join(dir, NS, id);
    fs.mkdirSync(bundle, { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
    // containerd creates the bundle's log fifo and keeps it open; the shim writes its log there.
    execFileSync('mkfifo', [path.join(bundle, 'log')]);
    const logFd = fs.openSync(path.join(bundle, 'log'), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const log = new net.Socket({ fd: logFd, readable: true, writable: false });
    let shimLog = '';
    log.on('data', (d) => {
      shimLog += d;
    });
    cleanups.push(() => {
      if (process.env.BERTH_SHIM_LOG) process.stderr.write(`shim log of ${id}:\n${shimLog}\n`);
      log.destroy();
    });
    cleanups.push(async () => {
      // Never leave a shim behind, whatever the test did.
      for (const pid of shimPidsFor(id)) {
        process.kill(pid, 'SIGKILL');
        await waitFor(`shim ${pid} to die`, () => !isAlive(pid), 5000);
      }
    });

    const start = spawn(
      SHIM,
      ['-namespace', NS, '-address', address, '-publish-binary', '/usr/bin/containerd', '-id', id, 'start'],
      {
        cwd: bundle,
        env: { ...process.env, TTRPC_ADDRESS: `${address}.ttrpc` },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    start.stdout.on('data', (d) => {
      out += d;
    });
    start.stderr.on('data', (d) => {
      err += d;
    });
    const code = await new Promise<number | null>((resolve) => start.on('close', resolve));
    if (code !== 0) throw new Error(`shim start exited ${code}: ${out}${err}\n${shimLog}`);
    const shimAddress = out.trim();
    cleanups.push(() => fs.rmSync(socketPath(shimAddress), { force: true }));

    const client = await TtrpcClient.connect(shimAddress, { timeoutMs: 10_000 });
    cleanups.push(() => client.close());
    return { client, bundle, address: shimAddress };
  }

  async function shutdownAndCheckGone(
    client: TtrpcClient,
    shimPid: number,
    shimAddress: string,
  ): Promise<void> {
    // The shim may exit before its answer is written; containerd ignores "ttrpc: closed" here too.
    await client.call(TASK, 'Shutdown', { id: '', now: true }, { timeoutMs: 10_000 }).catch((e) => {
      if (!(e instanceof UnavailableError)) throw e;
    });
    await waitFor('the shim to exit', () => !isAlive(shimPid));
    await waitFor('the shim socket to be removed', () => !fs.existsSync(socketPath(shimAddress)));
    await waitFor('the connection to close', () => client.closed);
  }

  it('starts, answers Connect and State, and exits on Shutdown', async () => {
    const id = `conn-${process.pid}`;
    const { client, address: shimAddress } = await startShim(id, { ociVersion: '1.0.2' });
    expect(shimAddress).toMatch(/^unix:\/\/\/run\/containerd\/s\/[0-9a-f]{64}$/);
    expect(fs.statSync(socketPath(shimAddress)).isSocket()).toBe(true);

    const task = client.service(TASK);
    const info = await task.connect({ id }, { namespace: NS, timeoutMs: 10_000 });
    expect(info.taskPid).toBe(0);
    expect(info.shimPid).toBeGreaterThan(0);
    expect(shimPidsFor(id)).toEqual([info.shimPid]);

    const err = await task
      .state({ id: 'no-such-task' }, { namespace: NS, timeoutMs: 10_000 })
      .catch((e: any) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('container not created: not found');

    // Many calls at once on the one connection, as the daemon will make them.
    const all = await Promise.all(
      Array.from({ length: 50 }, () => task.connect({ id }, { namespace: NS, timeoutMs: 10_000 })),
    );
    expect(new Set(all.map((r: any) => r.shimPid))).toEqual(new Set([info.shimPid]));

    await shutdownAndCheckGone(client, info.shimPid, shimAddress);
  });

  it('runs a busybox task and forwards its events to our Events server', async () => {
    const id = `task-${process.pid}`;
    // runc's default spec (namespaces, mounts, capabilities), with our process.
    const specDir = fs.mkdtempSync(path.join(dir, 'spec-'));
    execFileSync('runc', ['spec', '--bundle', specDir]);
    const config = JSON.parse(fs.readFileSync(path.join(specDir, 'config.json'), 'utf8'));
    config.process.terminal = false;
    config.process.args = ['/bin/sh', '-c', 'echo hi from busybox; exit 3'];
    config.root = { path: 'rootfs', readonly: true };
    config.hostname = id;

    const { client, bundle, address: shimAddress } = await startShim(id, config);
    const rootfs = path.join(bundle, 'rootfs', 'bin');
    fs.mkdirSync(rootfs, { recursive: true });
    fs.copyFileSync(BUSYBOX, path.join(rootfs, 'busybox'));
    fs.chmodSync(path.join(rootfs, 'busybox'), 0o755);
    fs.symlinkSync('busybox', path.join(rootfs, 'sh'));
    const output = path.join(dir, `${id}.out`);

    const task = client.service(TASK);
    const opts = { namespace: NS, timeoutMs: 20_000 };
    const { shimPid } = await task.connect({ id }, opts);
    cleanups.push(() => {
      // If the test failed half-way, take the container down with runc too.
      try {
        execFileSync('runc', ['--root', `/run/containerd/runc/${NS}`, 'delete', '-f', id], {
          stdio: 'ignore',
        });
      } catch {
        // already gone
      }
    });

    const created = await task.create(
      {
        id,
        bundle,
        rootfs: [],
        terminal: false,
        stdin: '',
        // The 1.6 shim needs both set for a file:// destination (it crashes on an empty stderr).
        stdout: `file://${output}`,
        stderr: `file://${output}`,
        checkpoint: '',
        parentCheckpoint: '',
      },
      opts,
    );
    expect(created.pid).toBeGreaterThan(0);
    const started = await task.start({ id, execId: '' }, opts);
    expect(started.pid).toBe(created.pid);
    const waited = await task.wait({ id, execId: '' }, opts);
    expect(waited.exitStatus).toBe(3);
    expect(waited.exitedAt.seconds).toBeGreaterThan(0);
    const deleted = await task.delete({ id, execId: '' }, opts);
    expect(deleted).toMatchObject({ pid: created.pid, exitStatus: 3 });
    expect(fs.readFileSync(output, 'utf8')).toBe('hi from busybox\n');

    await waitFor('the /tasks/delete event', () => forwarded.some((e) => e.topic === '/tasks/delete'));
    const mine = forwarded.filter((e) => e.event.containerId === id);
    expect(mine.map((e) => e.topic)).toEqual([
      '/tasks/create',
      '/tasks/start',
      '/tasks/exit',
      '/tasks/delete',
    ]);
    for (const e of mine) expect(e.namespace).toBe(NS);
    expect(mine[0].event).toMatchObject({ containerId: id, bundle, pid: created.pid });
    expect(mine[2].event).toMatchObject({ containerId: id, id, pid: created.pid, exitStatus: 3 });
    expect(mine[3].event).toMatchObject({ containerId: id, pid: created.pid, exitStatus: 3 });

    await shutdownAndCheckGone(client, shimPid, shimAddress);
  });
});
