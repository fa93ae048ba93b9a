/**
 * The Tasks service of an in-process berthd, through plain grpc-js clients, with
 * Debian's containerd-shim-runc-v2 as the runtime: containerd's answers and error codes
 * for every method, and the shims' events as Subscribe sees them. Needs root and runc.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeAny, GrpcCode, grpcClientConstructor, NAMESPACE_HEADER, PluginType } from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import { type Daemon, defaultConfig, type Exchange, type ExchangeEnvelope, startDaemon } from '../src';
import {
  canRunTasks,
  killLeftovers,
  makeBusyboxRootfs,
  mountsUnder,
  ociSpec,
  openFifo,
  shimPids,
  specAny,
  waitFor,
} from './tasks-fixtures';

type Any = Record<string, any>;
const NS = `berth-tasks-${process.pid}`;
const describeRoot = canRunTasks() ? describe : describe.skip;

describeRoot('Tasks service', () => {
  let dir: string;
  let rootfs: string;
  let daemon: Daemon;
  let tasks: grpc.Client;
  let containers: grpc.Client;
  const seen: ExchangeEnvelope[] = [];
  const readers: { close(): void }[] = [];

  const md = (namespace: string | undefined = NS) => {
    const m = new grpc.Metadata();
    if (namespace) m.set(NAMESPACE_HEADER, namespace);
    return m;
  };

  function call(c: grpc.Client, method: string, req: Any, meta = md()): Promise<Any> {
    return new Promise((resolve, reject) => {
      (c as any)[method](req, meta, (err: grpc.ServiceError | null, res: Any) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  /** The status a call fails with, as {code, details}. */
  async function status(
    c: grpc.Client,
    method: string,
    req: Any,
    meta = md(),
  ): Promise<{ code: number; details: string }> {
    try {
      await call(c, method, req, meta);
    } catch (err) {
      const e = err as grpc.ServiceError;
      return { code: e.code, details: e.details };
    }
    throw new Error(`${method} succeeded`);
  }

  async function container(id: string, args: string[], runtime = 'io.containerd.runc.v2'): Promise<void> {
    await call(containers, 'Create', {
      container: { id, runtime: { name: runtime }, spec: specAny(ociSpec(id, args)) },
    });
  }

  function fifo(name: string) {
    const r = openFifo(path.join(dir, `${name}-${Math.random().toString(36).slice(2)}`));
    readers.push(r);
    return r;
  }

  const createTask = (id: string, io: Any = {}) =>
    call(tasks, 'Create', {
      containerId: id,
      rootfs: [{ type: 'bind', source: rootfs, options: ['rbind', 'ro'] }],
      stdin: '',
      stdout: '',
      stderr: '',
      terminal: false,
      ...io,
    });

  const topics = (id: string) =>
    seen.filter((e) => (decodeAny(e.event) as Any).containerId === id).map((e) => e.topic);

  beforeAll(async () => {
    dir = fs.mkdtempSync('/tmp/berth-tasks-');
    rootfs = makeBusyboxRootfs(path.join(dir, 'busybox'));
    const config = defaultConfig();
    config.root = path.join(dir, 'root');
    config.state = path.join(dir, 'state');
    config.grpc.address = path.join(dir, 'berth.sock');
    daemon = await startDaemon(config);
    const exchange = daemon.registry.instancesOf<Exchange>(PluginType.Event)[0]!.instance;
    const sub = exchange.subscribe([`namespace==${NS}`]);
    void (async () => {
      for await (const e of sub) seen.push(e);
    })();
    const client = (service: string) =>
      new (grpcClientConstructor(`containerd.services.${service}`))(
        `unix://${daemon.address}`,
        grpc.credentials.createInsecure(),
      );
    tasks = client('tasks.v1.Tasks');
    containers = client('containers.v1.Containers');
  });

  afterEach(async () => {
    for (const r of readers.splice(0)) r.close();
  });

  afterAll(async () => {
    tasks?.close();
    containers?.close();
    await daemon?.stop();
    await killLeftovers(NS, dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs a task to its exit code and deletes it, with the shim lifecycle events', async () => {
    await container('life', ['/bin/sh', '-c', 'echo hello; exit 3']);
    const out = fifo('out');
    const created = await createTask('life', { stdout: out.path, stderr: out.path });
    expect(created).toEqual({ containerId: 'life', pid: expect.any(Number) });
    const got = await call(tasks, 'Get', { containerId: 'life' });
    expect(got.process).toMatchObject({ id: 'life', pid: created.pid, status: 'CREATED', stdout: out.path });

    const waiting = call(tasks, 'Wait', { containerId: 'life' });
    expect(await call(tasks, 'Start', { containerId: 'life' })).toEqual({ pid: created.pid });
    const exit = await waiting;
    expect(exit.exitStatus).toBe(3);
    expect(exit.exitedAt.seconds).toBeGreaterThan(0);
    await waitFor('the output', () => out.text() === 'hello\n');
    const listed = await call(tasks, 'List', {});
    expect(listed.tasks).toEqual([expect.objectContaining({ id: 'life', status: 'STOPPED', exitStatus: 3 })]);

    const deleted = await call(tasks, 'Delete', { containerId: 'life' });
    expect(deleted).toMatchObject({ pid: created.pid, exitStatus: 3, exitedAt: exit.exitedAt });
    await waitFor('/tasks/delete', () => topics('life').includes('/tasks/delete'));
    // Each lifecycle event once: the shim's, relayed; berthd adds none of its own.
    expect(topics('life')).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    expect(await status(tasks, 'Get', { containerId: 'life' })).toEqual({
      code: GrpcCode.NOT_FOUND,
      details: 'task life not found',
    });
    expect((await call(tasks, 'List', {})).tasks).toEqual([]);
    await call(containers, 'Delete', { id: 'life' });
    expect(mountsUnder(dir)).toEqual([]);
    await waitFor('the shim to exit', () => shimPids(NS).length === 0);
  });

  it('answers containerd error codes', async () => {
    await container('errs', ['/bin/sleep', '1000']);
    const missing = await status(tasks, 'Get', { containerId: 'nope' });
    expect(missing.code).toBe(GrpcCode.NOT_FOUND);
    expect(missing.details).toContain('nope');
    for (const method of [
      'Get',
      'Start',
      'Delete',
      'Kill',
      'Pause',
      'Resume',
      'ListPids',
      'Wait',
      'Update',
      'CloseIO',
    ]) {
      expect([method, await status(tasks, method, { containerId: 'errs' })]).toEqual([
        method,
        { code: GrpcCode.NOT_FOUND, details: 'task errs not found' },
      ]);
    }
    expect(await status(tasks, 'List', {}, md(''))).toEqual({
      code: GrpcCode.FAILED_PRECONDITION,
      details: 'namespace is required',
    });
    expect(await status(tasks, 'Exec', { containerId: 'errs', execId: '' })).toEqual({
      code: GrpcCode.INVALID_ARGUMENT,
      details: 'exec id cannot be empty',
    });
    expect((await status(tasks, 'Metrics', { filters: ['id=='] })).code).toBe(GrpcCode.INVALID_ARGUMENT);

    await createTask('errs');
    expect(await status(tasks, 'Create', { containerId: 'errs' })).toEqual({
      code: GrpcCode.ALREADY_EXISTS,
      details: 'task errs: already exists',
    });
    expect((await status(tasks, 'Checkpoint', { containerId: 'errs' })).code).toBe(GrpcCode.UNIMPLEMENTED);
    expect((await status(tasks, 'Exec', { containerId: 'errs', execId: 'bad/id' })).code).toBe(
      GrpcCode.INVALID_ARGUMENT,
    );
    const noExec = await status(tasks, 'Start', { containerId: 'errs', execId: 'ghost' });
    expect(noExec.code).toBe(GrpcCode.NOT_FOUND);
    expect(noExec.details).toContain('ghost');
    expect(await status(tasks, 'Get', { containerId: 'errs' }, md(`${NS}-elsewhere`))).toMatchObject({
      code: GrpcCode.NOT_FOUND,
    });

    await call(tasks, 'Kill', { containerId: 'errs', signal: 9 });
    expect((await call(tasks, 'Wait', { containerId: 'errs' })).exitStatus).toBe(137);
    await call(tasks, 'Delete', { containerId: 'errs' });
    await call(containers, 'Delete', { id: 'errs' });

    await container('nort', ['/bin/true'], 'io.containerd.nosuch.v1');
    expect(await status(tasks, 'Create', { containerId: 'nort' })).toEqual({
      code: GrpcCode.FAILED_PRECONDITION,
      details:
        'runtime "io.containerd.nosuch.v1" binary not installed "containerd-shim-nosuch-v1": file does not exist',
    });
    await call(containers, 'Delete', { id: 'nort' });
    expect(fs.readdirSync(path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS))).toEqual([]);
  });

  it('execs, lists pids, pauses, resumes, updates, closes stdin and reports metrics', async () => {
    await container('busy', ['/bin/cat']);
    // stdin: a fifo the test writes and the shim reads, as ctr's. The shim holds a writer
    // of its own until CloseIO, so cat sees the end of its input only then.
    const stdin = path.join(dir, 'busy-stdin');
    execFileSync('mkfifo', [stdin]);
    const w = fs.openSync(stdin, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const out = fifo('busy-out');
    const { pid } = await createTask('busy', { stdin, stdout: out.path, stderr: out.path });
    await call(tasks, 'Start', { containerId: 'busy' });
    fs.writeSync(w, 'echoed by cat\n');
    fs.closeSync(w);
    await waitFor('cat to echo', () => out.text() === 'echoed by cat\n');

    const execOut = fifo('exec-out');
    const processSpec = ociSpec('busy', ['/bin/sh', '-c', 'echo from exec; exit 4']).process;
    await call(tasks, 'Exec', {
      containerId: 'busy',
      execId: 'e1',
      stdout: execOut.path,
      stderr: execOut.path,
      spec: {
        typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process',
        value: Buffer.from(JSON.stringify(processSpec)),
      },
    });
    expect((await call(tasks, 'Get', { containerId: 'busy', execId: 'e1' })).process).toMatchObject({
      id: 'e1',
      status: 'CREATED',
    });
    const execWait = call(tasks, 'Wait', { containerId: 'busy', execId: 'e1' });
    const started = await call(tasks, 'Start', { containerId: 'busy', execId: 'e1' });
    expect(started.pid).toBeGreaterThan(0);
    expect((await execWait).exitStatus).toBe(4);
    await waitFor('the exec output', () => execOut.text() === 'from exec\n');
    expect(await call(tasks, 'DeleteProcess', { containerId: 'busy', execId: 'e1' })).toMatchObject({
      id: 'e1',
      pid: started.pid,
      exitStatus: 4,
    });
    expect((await status(tasks, 'Get', { containerId: 'busy', execId: 'e1' })).code).toBe(GrpcCode.NOT_FOUND);

    const pids = await call(tasks, 'ListPids', { containerId: 'busy' });
    expect(pids.processes.map((p: Any) => p.pid)).toEqual([pid]);
    await call(tasks, 'Pause', { containerId: 'busy' });
    expect((await call(tasks, 'Get', { containerId: 'busy' })).process.status).toBe('PAUSED');
    await call(tasks, 'Resume', { containerId: 'busy' });
    expect((await call(tasks, 'Get', { containerId: 'busy' })).process.status).toBe('RUNNING');
    await call(tasks, 'Update', {
      containerId: 'busy',
      resources: {
        typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources',
        value: Buffer.from(JSON.stringify({ pids: { limit: 50 } })),
      },
    });
    const metrics = await call(tasks, 'Metrics', { filters: ['id==busy'] });
    expect(metrics.metrics).toEqual([
      expect.objectContaining({
        id: 'busy',
        data: expect.objectContaining({ typeUrl: expect.stringContaining('cgroups') }),
      }),
    ]);
    expect((await call(tasks, 'Metrics', { filters: ['id==other'] })).metrics).toEqual([]);

    // Closing stdin ends cat.
    const waiting = call(tasks, 'Wait', { containerId: 'busy' });
    await call(tasks, 'CloseIO', { containerId: 'busy', stdin: true });
    expect((await waiting).exitStatus).toBe(0);
    await call(tasks, 'Delete', { containerId: 'busy' });
    await call(containers, 'Delete', { id: 'busy' });
    expect(topics('busy')).toEqual(
      expect.arrayContaining(['/tasks/exec-added', '/tasks/exec-started', '/tasks/paused', '/tasks/resumed']),
    );
  });
});
