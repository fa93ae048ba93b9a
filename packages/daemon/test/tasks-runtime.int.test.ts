/**
 * The runtime v2 task manager against Debian's containerd-shim-runc-v2: bundles, the
 * shim's start/delete command line, the task API over ttrpc, events forwarded to our
 * ttrpc listener, shims dying under us, and managers restarting over live shims.
 * Needs root, runc and the containerd package.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AlreadyExistsError,
  type Container,
  type ContainerStore,
  FailedPreconditionError,
  NotFoundError,
  UnavailableError,
} from '@berth/api';
import { Exchange, type ExchangeEnvelope } from '../src';
import { ShimEventsServer, ttrpcAddressOf } from '../src/runtime/events-server';
import { type RuntimeCreateOptions, TaskManager } from '../src/runtime/manager';
import {
  canRunTasks,
  isAlive,
  killLeftovers,
  makeBusyboxRootfs,
  mountsUnder,
  ociSpec,
  openFifo,
  runcContainers,
  shimPids,
  specAny,
  waitFor,
} from './tasks-fixtures';

const NS = `berth-rt-${process.pid}`;
const ctx = { namespace: NS };
const describeRoot = canRunTasks() ? describe : describe.skip;

describeRoot('runtime v2 task manager with containerd-shim-runc-v2', () => {
  let dir: string;
  let rootfs: string;
  let address: string;
  let exchange: Exchange;
  let events: ShimEventsServer;
  const seen: ExchangeEnvelope[] = [];
  const managers: TaskManager[] = [];
  const readers: { close(): void }[] = [];

  /** A container store holding just what restart needs: the runtime name. */
  const containers: ContainerStore = {
    get: async (_ctx, id) => {
      if (id.startsWith('orphan')) throw new NotFoundError(`container "${id}": not found`);
      return { id, runtime: { name: 'io.containerd.runc.v2' } } as Container;
    },
    list: async () => [],
    create: async () => {
      throw new Error('not in this test');
    },
    update: async () => {
      throw new Error('not in this test');
    },
    delete: async () => {},
  };

  async function manager(): Promise<TaskManager> {
    const m = await TaskManager.open({
      root: path.join(dir, 'root', 'io.containerd.runtime.v2.task'),
      state: path.join(dir, 'state', 'io.containerd.runtime.v2.task'),
      address,
      ttrpcAddress: ttrpcAddressOf(address),
      containers,
      events: exchange,
      shimDirs: [],
    });
    const stop = events.observe((e) => m.observe(e));
    const close = m.close.bind(m);
    m.close = async () => {
      stop();
      await close();
    };
    managers.push(m);
    return m;
  }

  /** Options for a busybox task whose rootfs is bind-mounted into the bundle by the shim. */
  function busybox(
    id: string,
    args: string[],
    io: { stdout?: string; stderr?: string } = {},
  ): RuntimeCreateOptions {
    return {
      runtime: 'io.containerd.runc.v2',
      spec: specAny(ociSpec(id, args)),
      rootfs: [{ type: 'bind', source: rootfs, options: ['rbind', 'ro'] }],
      stdin: '',
      stdout: io.stdout ?? '',
      stderr: io.stderr ?? '',
      terminal: false,
    };
  }

  function output(name: string) {
    const r = openFifo(path.join(dir, `${name}-${Math.random().toString(36).slice(2)}`));
    readers.push(r);
    return r;
  }

  const topics = (id: string) =>
    seen.filter((e) => (e.decoded as { containerId?: string })?.containerId === id).map((e) => e.topic);

  beforeAll(async () => {
    dir = fs.mkdtempSync('/tmp/berth-rt-');
    rootfs = makeBusyboxRootfs(path.join(dir, 'busybox'));
    address = path.join(dir, 'berth.sock');
    exchange = new Exchange();
    const sub = exchange.subscribe([]);
    void (async () => {
      for await (const e of sub) seen.push(e);
    })();
    events = new ShimEventsServer(exchange);
    await events.listen(ttrpcAddressOf(address));
  });

  afterEach(async () => {
    for (const r of readers.splice(0)) r.close();
    for (const m of managers.splice(0)) await m.close();
    const left = await killLeftovers(NS, dir);
    expect(left).toEqual({ shims: [], containers: [], mounts: [] });
  });

  afterAll(async () => {
    await events?.close();
    await killLeftovers(NS, dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs a task to its exit code, relays its events, and leaves nothing behind once deleted', async () => {
    const m = await manager();
    const out = output('out');
    const { task, pid } = await m.create(
      ctx,
      't1',
      busybox('t1', ['/bin/sh', '-c', 'echo hi; exit 3'], { stdout: out.path, stderr: out.path }),
    );
    expect(pid).toBeGreaterThan(0);
    const bundle = task.bundle.path;
    expect(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')).toContain('echo hi; exit 3');
    expect(fs.readlinkSync(path.join(bundle, 'work'))).toBe(
      path.join(dir, 'root', 'io.containerd.runtime.v2.task', NS, 't1'),
    );
    expect(fs.readFileSync(path.join(bundle, 'shim-binary-path'), 'utf8')).toBe(
      '/usr/bin/containerd-shim-runc-v2',
    );
    expect(mountsUnder(path.join(bundle, 'rootfs'))).toHaveLength(1);
    expect((await task.state(ctx)).status).toBe('CREATED');
    const [shimPid] = shimPids(NS);

    expect(await task.start(ctx)).toBe(pid);
    const exit = await task.wait(ctx);
    expect(exit.exitStatus).toBe(3);
    await waitFor('the output', () => out.text() === 'hi\n');
    expect((await task.state(ctx)).status).toBe('STOPPED');

    const deleted = await m.delete(ctx, 't1');
    expect(deleted).toMatchObject({ pid, exitStatus: 3 });
    await waitFor('/tasks/delete', () => topics('t1').includes('/tasks/delete'));
    expect(topics('t1')).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    expect(seen.find((e) => e.topic === '/tasks/exit')?.namespace).toBe(NS);

    expect(() => m.get(ctx, 't1')).toThrow(NotFoundError);
    expect(fs.existsSync(bundle)).toBe(false);
    expect(fs.existsSync(path.join(dir, 'root', 'io.containerd.runtime.v2.task', NS, 't1'))).toBe(false);
    expect(mountsUnder(path.join(dir, 'state'))).toEqual([]);
    await waitFor('the shim to exit', () => !isAlive(shimPid!));
  });

  it('execs, lists pids, pauses, resumes and kills a running task', async () => {
    const m = await manager();
    const { task, pid } = await m.create(ctx, 'svc', busybox('svc', ['/bin/sleep', '1000']));
    await task.start(ctx);
    expect((await task.state(ctx)).status).toBe('RUNNING');

    const out = output('exec');
    const execSpec = ociSpec('svc', ['/bin/sh', '-c', 'echo from exec; exit 4']).process;
    await task.exec(
      ctx,
      'e1',
      { stdin: '', stdout: out.path, stderr: out.path, terminal: false },
      {
        typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process',
        value: Buffer.from(JSON.stringify(execSpec)),
      },
    );
    const waiting = task.wait(ctx, 'e1');
    await task.start(ctx, 'e1');
    expect((await waiting).exitStatus).toBe(4);
    await waitFor('the exec output', () => out.text() === 'from exec\n');
    expect(await task.deleteProcess(ctx, 'e1')).toMatchObject({ exitStatus: 4 });
    await expect(task.state(ctx, 'e1')).rejects.toThrow(NotFoundError);

    expect((await task.pids(ctx)).map((p) => p.pid)).toEqual([pid]);
    await task.pause(ctx);
    expect((await task.state(ctx)).status).toBe('PAUSED');
    await task.resume(ctx);
    expect((await task.state(ctx)).status).toBe('RUNNING');
    expect(await task.stats(ctx)).toMatchObject({
      typeUrl: expect.stringContaining('io.containerd.cgroups'),
    });

    await task.kill(ctx, '', 9, false);
    expect((await task.wait(ctx)).exitStatus).toBe(137);
    await m.delete(ctx, 'svc');
    expect(topics('svc')).toEqual(
      expect.arrayContaining(['/tasks/exec-added', '/tasks/exec-started', '/tasks/paused', '/tasks/resumed']),
    );
  });

  it('answers AlreadyExists for a second task of the same id, NotFound for none', async () => {
    const m = await manager();
    const { task } = await m.create(ctx, 'dup', busybox('dup', ['/bin/sleep', '1000']));
    await expect(m.create(ctx, 'dup', busybox('dup', ['/bin/true']))).rejects.toThrow(
      new AlreadyExistsError('task dup: already exists'),
    );
    expect(() => m.get(ctx, 'nope')).toThrow(new NotFoundError('task nope not found'));
    expect(() => m.get({ namespace: `${NS}-other` }, 'dup')).toThrow(NotFoundError);
    // A created task that never started can be deleted; the shim goes with it.
    expect((await task.state(ctx)).status).toBe('CREATED');
    await m.delete(ctx, 'dup');
    expect(m.list(ctx)).toEqual([]);
  });

  it('cleans everything up when the container cannot be created', async () => {
    const m = await manager();
    const err = await m.create(ctx, 'bad', busybox('bad', ['/no/such/binary'])).catch((e) => e);
    expect(err.message).toMatch(/^failed to create shim task: .*no such file or directory/);
    expect(() => m.get(ctx, 'bad')).toThrow(NotFoundError);
    expect(fs.existsSync(path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS, 'bad'))).toBe(false);
    expect(mountsUnder(path.join(dir, 'state'))).toEqual([]);
    await waitFor('the shim to exit', () => shimPids(NS).length === 0);
  });

  it('refuses a runtime whose shim is not installed, before making anything', async () => {
    const m = await manager();
    const opts = { ...busybox('x', ['/bin/true']), runtime: 'io.containerd.nosuch.v1' };
    await expect(m.create(ctx, 'x', opts)).rejects.toThrow(
      new FailedPreconditionError(
        'runtime "io.containerd.nosuch.v1" binary not installed "containerd-shim-nosuch-v1": file does not exist',
      ),
    );
    expect(fs.existsSync(path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS, 'x'))).toBe(false);
  });

  it('reports a task whose shim was SIGKILLed as stopped, never hangs, and cleans up', async () => {
    const m = await manager();
    const { task, pid } = await m.create(ctx, 'victim', busybox('victim', ['/bin/sleep', '1000']));
    await task.start(ctx);
    const bundle = task.bundle.path;
    const socket = (await task.bundle.address())!.replace('unix://', '');
    const waiting = task.wait(ctx).catch((e) => e);
    const [shimPid] = shimPids(NS);
    process.kill(shimPid!, 'SIGKILL');

    const err = await waiting;
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toBe('task victim: shim disconnected: ttrpc: closed');
    await waitFor('the container to be killed', () => !isAlive(pid));
    await waitFor('the exit event', () => topics('victim').includes('/tasks/exit'));
    const state = await m.get(ctx, 'victim').state(ctx);
    expect(state).toMatchObject({ status: 'STOPPED', exitStatus: 137, pid });
    expect((await m.get(ctx, 'victim').wait(ctx)).exitStatus).toBe(137);
    await expect(m.get(ctx, 'victim').start(ctx)).rejects.toThrow(FailedPreconditionError);
    expect(fs.existsSync(bundle)).toBe(false);
    expect(fs.existsSync(socket)).toBe(false);
    expect(runcContainers(NS)).toEqual([]);

    expect(await m.delete(ctx, 'victim')).toMatchObject({ pid, exitStatus: 137 });
    expect(topics('victim').slice(-2)).toEqual(['/tasks/exit', '/tasks/delete']);
    expect(m.list(ctx)).toEqual([]);
  });

  it('keeps the exit status of a task whose shim dies after the task exited', async () => {
    const m = await manager();
    const { task, pid } = await m.create(ctx, 'done', busybox('done', ['/bin/sh', '-c', 'exit 3']));
    await task.start(ctx);
    expect((await task.wait(ctx)).exitStatus).toBe(3);
    await waitFor('the exit event', () => topics('done').includes('/tasks/exit'));
    const [shimPid] = shimPids(NS);
    process.kill(shimPid!, 'SIGKILL');
    await waitFor('the task to be dead', () => task.phase === 'dead');
    expect(await m.get(ctx, 'done').state(ctx)).toMatchObject({ status: 'STOPPED', exitStatus: 3, pid });
    // berthd publishes no second exit: the shim's own was the one.
    expect(topics('done').filter((t) => t === '/tasks/exit')).toHaveLength(1);
    expect(await m.delete(ctx, 'done')).toMatchObject({ exitStatus: 3, pid });
  });

  it('reconnects after a restart: running tasks stay, exits that happened meanwhile are kept, dead shims are cleaned', async () => {
    const first = await manager();
    const live = await first.create(ctx, 'live', busybox('live', ['/bin/sleep', '1000']));
    await live.task.start(ctx);
    const quits = await first.create(
      ctx,
      'quits',
      busybox('quits', ['/bin/sh', '-c', 'trap "exit 7" TERM; while true; do sleep 1; done']),
    );
    await quits.task.start(ctx);
    const doomed = await first.create(ctx, 'doomed', busybox('doomed', ['/bin/sleep', '1000']));
    await doomed.task.start(ctx);
    const doomedShim = (await doomed.task.connect()).shimPid;
    const doomedBundle = doomed.task.bundle.path;
    // A task whose container record is gone and whose shim dies: nothing could delete it.
    const orphan = await first.create(ctx, 'orphan', busybox('orphan', ['/bin/sleep', '1000']));
    await orphan.task.start(ctx);
    const orphanShim = (await orphan.task.connect()).shimPid;

    // berthd goes away: its connections close, the shims and containers stay.
    await first.close();
    managers.splice(managers.indexOf(first), 1);
    expect(isAlive(live.pid)).toBe(true);
    expect(shimPids(NS)).toHaveLength(4);
    // Meanwhile one task exits and two shims die.
    process.kill(quits.pid, 'SIGTERM');
    process.kill(doomedShim, 'SIGKILL');
    process.kill(orphanShim, 'SIGKILL');
    await waitFor('the doomed shims to die', () => !isAlive(doomedShim) && !isAlive(orphanShim));
    await waitFor('the quitting task to exit', () => !isAlive(quits.pid));

    const second = await manager();
    expect(
      second
        .list(ctx)
        .map((t) => t.id)
        .sort(),
    ).toEqual(['doomed', 'live', 'quits']);
    expect(await second.get(ctx, 'live').state(ctx)).toMatchObject({ status: 'RUNNING', pid: live.pid });
    expect(await second.get(ctx, 'quits').state(ctx)).toMatchObject({ status: 'STOPPED', exitStatus: 7 });
    expect(await second.get(ctx, 'doomed').state(ctx)).toMatchObject({ status: 'STOPPED', exitStatus: 137 });
    expect(fs.existsSync(doomedBundle)).toBe(false);
    expect(isAlive(doomed.pid)).toBe(false);
    expect(isAlive(orphan.pid)).toBe(false);
    expect(fs.existsSync(orphan.task.bundle.path)).toBe(false);

    // The reconnected task works as before.
    const out = output('after');
    const execSpec = ociSpec('live', ['/bin/echo', 'still here']).process;
    const t = second.get(ctx, 'live');
    await t.exec(
      ctx,
      'again',
      { stdin: '', stdout: out.path, stderr: out.path, terminal: false },
      specAny(execSpec),
    );
    await t.start(ctx, 'again');
    expect((await t.wait(ctx, 'again')).exitStatus).toBe(0);
    await waitFor('the exec output', () => out.text() === 'still here\n');
    await t.deleteProcess(ctx, 'again');
    await t.kill(ctx, '', 9, false);
    expect((await t.wait(ctx)).exitStatus).toBe(137);

    for (const id of ['live', 'quits', 'doomed']) await second.delete(ctx, id);
    expect(fs.readdirSync(path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS))).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'root', 'io.containerd.runtime.v2.task', NS))).toEqual([]);
    await waitFor('every shim to exit', () => shimPids(NS).length === 0);
  });
});
