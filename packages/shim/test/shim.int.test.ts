// The shim driven directly over ttrpc, as a daemon drives it (root, runc).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeMessage, encodeMessage } from '@berth/api';
import { decodeShimMessage } from '../src/protos';
import {
  alive,
  makeRootfs,
  processSpec,
  requireBuilt,
  runShim,
  sleep,
  World,
  waitUntil,
  zombieChildren,
} from './helpers';

jest.setTimeout(60_000);

let base: string;
let rootfs: string;
let world: World;
const NS = { namespace: 'testns' };

beforeAll(() => {
  requireBuilt();
  base = mkdtempSync(join(tmpdir(), 'berth-shim-rootfs-'));
  rootfs = makeRootfs(base);
});
afterAll(() => rmSync(base, { recursive: true, force: true }));
beforeEach(async () => {
  world = await new World(rootfs).init();
});
afterEach(async () => {
  await world.dispose();
});

test('create, start, wait: exit code, stdout and stderr through FIFOs, events, delete and shutdown', async () => {
  const bundle = world.bundle('life', { args: ['sh', '-c', 'echo out-line; echo err-line >&2; exit 3'] });
  const out = world.reader('life-out');
  const err = world.reader('life-err');
  const { task, address } = await world.start('life', bundle);
  const { pid } = await task.Create({ id: 'life', bundle, stdout: out.path, stderr: err.path }, NS);
  expect(pid).toBeGreaterThan(0);
  expect(await task.State({ id: 'life' }, NS)).toMatchObject({
    id: 'life',
    bundle,
    pid,
    status: 'CREATED',
    stdout: out.path,
  });
  expect(await task.Start({ id: 'life' }, NS)).toEqual({ pid });
  const waited = await task.Wait({ id: 'life' }, NS);
  expect(waited.exitStatus).toBe(3);
  expect(waited.exitedAt.seconds).toBeGreaterThan(0);
  await out.ended;
  await err.ended;
  expect(out.text()).toBe('out-line\n');
  expect(err.text()).toBe('err-line\n');
  expect(await task.State({ id: 'life' }, NS)).toMatchObject({ status: 'STOPPED', exitStatus: 3 });
  const deleted = await task.Delete({ id: 'life' }, NS);
  expect(deleted).toMatchObject({ pid, exitStatus: 3 });
  await world.events.waitFor('/tasks/delete', 'life');
  expect(world.events.topics('life')).toEqual([
    '/tasks/create',
    '/tasks/start',
    '/tasks/exit',
    '/tasks/delete',
  ]);
  const exit = world.events.events.find((e) => e.topic === '/tasks/exit')!;
  expect(exit.typeUrl).toBe('containerd.events.TaskExit');
  expect(exit.namespace).toBe('testns');
  expect(exit.event).toMatchObject({ containerId: 'life', id: 'life', pid, exitStatus: 3 });
  await expect(task.State({ id: 'life' }, NS)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  const [shimPid] = world.shimPids;
  await task.Shutdown({ id: 'life' }, NS);
  await waitUntil('the shim exits', () => !alive(shimPid));
  expect(existsSync(address.replace('unix://', ''))).toBe(false);
});

test('exec: output, exit code, pids with exec details, kill, delete; duplicate and bad requests are refused', async () => {
  const bundle = world.bundle('ex', { args: ['sleep', '1000'] });
  const { task } = await world.start('ex', bundle);
  const { pid } = await task.Create({ id: 'ex', bundle }, NS);
  await task.Start({ id: 'ex' }, NS);

  const out = world.reader('ex1-out');
  await task.Exec(
    { id: 'ex', execId: 'e1', stdout: out.path, spec: processSpec(['sh', '-c', 'echo $((6*7)); exit 5']) },
    NS,
  );
  await expect(task.Exec({ id: 'ex', execId: 'e1', spec: processSpec(['true']) }, NS)).rejects.toMatchObject({
    code: 'ERR_ALREADY_EXISTS',
  });
  expect(await task.State({ id: 'ex', execId: 'e1' }, NS)).toMatchObject({
    id: 'e1',
    execId: 'e1',
    status: 'CREATED',
  });
  const started = await task.Start({ id: 'ex', execId: 'e1' }, NS);
  expect(started.pid).toBeGreaterThan(0);
  expect(await task.Wait({ id: 'ex', execId: 'e1' }, NS)).toMatchObject({ exitStatus: 5 });
  await out.ended;
  expect(out.text()).toBe('42\n');
  expect(await task.Delete({ id: 'ex', execId: 'e1' }, NS)).toMatchObject({
    pid: started.pid,
    exitStatus: 5,
  });
  await expect(task.State({ id: 'ex', execId: 'e1' }, NS)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });

  await task.Exec({ id: 'ex', execId: 'e2', spec: processSpec(['sleep', '1000']) }, NS);
  const e2 = await task.Start({ id: 'ex', execId: 'e2' }, NS);
  const { processes } = await task.Pids({ id: 'ex' }, NS);
  expect(processes.map((p: { pid: number }) => p.pid).sort()).toEqual([pid, e2.pid].sort());
  const info = processes.find((p: { pid: number }) => p.pid === e2.pid).info;
  expect(info.typeUrl).toBe('containerd.runc.v1.ProcessDetails');
  expect(decodeShimMessage(info.typeUrl, info.value)).toEqual({ execId: 'e2' });
  expect(processes.find((p: { pid: number }) => p.pid === pid).info).toBeUndefined();
  await expect(task.Delete({ id: 'ex', execId: 'e2' }, NS)).rejects.toMatchObject({
    code: 'ERR_FAILED_PRECONDITION',
  });
  await task.Kill({ id: 'ex', execId: 'e2', signal: 9 }, NS);
  expect(await task.Wait({ id: 'ex', execId: 'e2' }, NS)).toMatchObject({ exitStatus: 137 });
  await expect(task.Kill({ id: 'ex', execId: 'e2', signal: 9 }, NS)).rejects.toMatchObject({
    code: 'ERR_NOT_FOUND',
  });

  // A program that does not exist fails at Start with the runtime's own words.
  await task.Exec({ id: 'ex', execId: 'e3', spec: processSpec(['/bin/no-such-program']) }, NS);
  await expect(task.Start({ id: 'ex', execId: 'e3' }, NS)).rejects.toThrow(
    /OCI runtime exec failed.*no-such-program/,
  );
  await task.Delete({ id: 'ex', execId: 'e3' }, NS);
  await expect(
    task.Exec({ id: 'ex', execId: 'bad id', spec: processSpec(['true']) }, NS),
  ).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
  });
  await expect(task.Exec({ id: 'ex', execId: 'e4' }, NS)).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
  });

  await task.Kill({ id: 'ex', signal: 9 }, NS);
  expect(await task.Wait({ id: 'ex' }, NS)).toMatchObject({ exitStatus: 137 });
  await task.Delete({ id: 'ex' }, NS);
  await world.events.waitFor('/tasks/delete', 'ex');
  expect(world.events.topics('ex')).toEqual([
    '/tasks/create',
    '/tasks/start',
    '/tasks/exec-added',
    '/tasks/exec-started',
    '/tasks/exit',
    '/tasks/exec-added',
    '/tasks/exec-started',
    '/tasks/exit',
    '/tasks/exec-added',
    '/tasks/exit',
    '/tasks/delete',
  ]);
  const started2 = world.events.events.filter((e) => e.topic === '/tasks/exec-started')[1];
  expect(started2.event).toMatchObject({ containerId: 'ex', execId: 'e2', pid: e2.pid });
});

test('pause and resume, signals to init and to all processes, stats as cgroup metrics', async () => {
  const bundle = world.bundle('pr', {
    args: ['sh', '-c', 'trap "exit 42" TERM; while true; do sleep 0.1; done'],
  });
  const { task } = await world.start('pr', bundle);
  await task.Create({ id: 'pr', bundle }, NS);
  await expect(task.Pause({ id: 'pr' }, NS)).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });
  await task.Start({ id: 'pr' }, NS);
  await task.Exec({ id: 'pr', execId: 'x', spec: processSpec(['sleep', '1000']) }, NS);
  await task.Start({ id: 'pr', execId: 'x' }, NS);

  await task.Pause({ id: 'pr' }, NS);
  expect((await task.State({ id: 'pr' }, NS)).status).toBe('PAUSED');
  expect((await task.State({ id: 'pr', execId: 'x' }, NS)).status).toBe('PAUSED');
  await expect(task.Exec({ id: 'pr', execId: 'y', spec: processSpec(['true']) }, NS)).rejects.toMatchObject({
    code: 'ERR_FAILED_PRECONDITION',
  });
  await task.Resume({ id: 'pr' }, NS);
  expect((await task.State({ id: 'pr' }, NS)).status).toBe('RUNNING');
  await expect(task.Resume({ id: 'pr' }, NS)).rejects.toMatchObject({ code: 'ERR_FAILED_PRECONDITION' });

  const { stats } = await task.Stats({ id: 'pr' }, NS);
  expect(stats.typeUrl).toMatch(/^io\.containerd\.cgroups\.v[12]\.Metrics$/);
  const metrics = decodeShimMessage<any>(stats.typeUrl, stats.value);
  expect(metrics.pids.current).toBeGreaterThanOrEqual(2);
  expect(
    stats.typeUrl.endsWith('v1.Metrics') ? metrics.memory.usage.usage : metrics.memory.usage,
  ).toBeGreaterThan(0);

  await task.Kill({ id: 'pr', signal: 15 }, NS);
  expect(await task.Wait({ id: 'pr' }, NS)).toMatchObject({ exitStatus: 42 });
  // The pid namespace went with init: the exec died too.
  expect(await task.Wait({ id: 'pr', execId: 'x' }, NS)).toMatchObject({ exitStatus: 137 });
  await expect(task.Kill({ id: 'pr', signal: 9 }, NS)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  await expect(
    task.Update({ id: 'pr', resources: { typeUrl: 'x', value: Buffer.from('{}') } }, NS),
  ).rejects.toMatchObject({
    code: 'ERR_FAILED_PRECONDITION',
  });
  await task.Delete({ id: 'pr' }, NS);
  await world.events.waitFor('/tasks/delete', 'pr');
  expect(world.events.topics('pr')).toEqual(expect.arrayContaining(['/tasks/paused', '/tasks/resumed']));
  await expect(task.Stats({ id: 'pr' }, NS)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
});

test('a terminal: the pty master comes over the console socket, ResizePty sets its size, stdin reaches it', async () => {
  const bundle = world.bundle('tty', {
    args: ['sh', '-c', 'stty size; tty; read line; echo "got:$line"'],
    terminal: true,
  });
  const out = world.reader('tty-out');
  const input = world.writer('tty-in');
  const { task } = await world.start('tty', bundle);
  await task.Create({ id: 'tty', bundle, terminal: true, stdin: input.path, stdout: out.path }, NS);
  await task.ResizePty({ id: 'tty', width: 101, height: 33 }, NS);
  input.open();
  await task.Start({ id: 'tty' }, NS);
  await out.waitFor('/dev/pts/');
  await input.write('hello\n');
  expect(await task.Wait({ id: 'tty' }, NS)).toMatchObject({ exitStatus: 0 });
  await out.ended;
  const text = out.text().replace(/\r/g, '');
  expect(text).toContain('33 101\n');
  expect(text).toMatch(/\/dev\/pts\/\d+\n/);
  expect(text).toContain('got:hello\n');
  expect((await task.State({ id: 'tty' }, NS)).terminal).toBe(true);
  await task.Delete({ id: 'tty' }, NS);
});

test('a terminal in raw mode that never reads its input does not stall the shim', async () => {
  const bundle = world.bundle('raw', {
    args: ['sh', '-c', 'stty raw -echo; echo ready; sleep 1000'],
    terminal: true,
  });
  const out = world.reader('raw-out');
  const input = world.writer('raw-in');
  const { task } = await world.start('raw', bundle);
  await task.Create({ id: 'raw', bundle, terminal: true, stdin: input.path, stdout: out.path }, NS);
  input.open();
  await task.Start({ id: 'raw' }, NS);
  await out.waitFor('ready');
  // Far more than a pty's input queue holds; nobody in the container reads it.
  void input.write('x'.repeat(512 * 1024));
  await sleep(300);
  expect((await task.State({ id: 'raw' }, { ...NS, timeoutMs: 5000 })).status).toBe('RUNNING');
  await task.Kill({ id: 'raw', signal: 9 }, { ...NS, timeoutMs: 5000 });
  expect(await task.Wait({ id: 'raw' }, NS)).toMatchObject({ exitStatus: 137 });
  await task.Delete({ id: 'raw' }, NS);
});

test('stdin through a FIFO: the container sees EOF only after CloseIO and the client closing', async () => {
  const bundle = world.bundle('cat', { args: ['sh', '-c', 'cat; echo done'] });
  const out = world.reader('cat-out');
  const input = world.writer('cat-in');
  const { task } = await world.start('cat', bundle);
  await task.Create({ id: 'cat', bundle, stdin: input.path, stdout: out.path }, NS);
  input.open();
  await task.Start({ id: 'cat' }, NS);
  await input.write('line one\n');
  await out.waitFor('line one\n');
  input.close();
  await sleep(200);
  // Our own end of the FIFO still holds it open: cat is still reading.
  expect((await task.State({ id: 'cat' }, NS)).status).toBe('RUNNING');
  await task.CloseIO({ id: 'cat', stdin: true }, NS);
  expect(await task.Wait({ id: 'cat' }, NS)).toMatchObject({ exitStatus: 0 });
  await out.ended;
  expect(out.text()).toBe('line one\ndone\n');
  await task.Delete({ id: 'cat' }, NS);
});

test('processes that outlive init without a pid namespace are killed and reaped: no zombies', async () => {
  const bundle = world.bundle('orph', {
    args: ['sh', '-c', '(sleep 1000 &); (sleep 0.1 &); sleep 1; exit 0'],
    hostPid: true,
  });
  const { task } = await world.start('orph', bundle);
  await task.Create({ id: 'orph', bundle }, NS);
  await task.Start({ id: 'orph' }, NS);
  let processes: { pid: number }[] = [];
  for (let i = 0; i < 100 && processes.length < 2; i++) {
    processes = (await task.Pids({ id: 'orph' }, NS)).processes;
    if (processes.length < 2) await sleep(10);
  }
  expect(processes.length).toBeGreaterThanOrEqual(2);
  expect(await task.Wait({ id: 'orph' }, NS)).toMatchObject({ exitStatus: 0 });
  const [shimPid] = world.shimPids;
  // init's exit killed the rest (runc kill --all), and the shim reaped them.
  await waitUntil('no process of the container is left', () =>
    processes.every((p: { pid: number }) => !alive(p.pid)),
  );
  await waitUntil('the shim has no zombie children', () => zombieChildren(shimPid).length === 0);
  await task.Delete({ id: 'orph' }, NS);
  expect(zombieChildren(shimPid)).toEqual([]);
});

test('Update applies resources to a running container', async () => {
  const bundle = world.bundle('upd', { args: ['sleep', '1000'] });
  const { task } = await world.start('upd', bundle);
  await task.Create({ id: 'upd', bundle }, NS);
  await task.Start({ id: 'upd' }, NS);
  const resources = { pids: { limit: 77 } };
  await task.Update(
    {
      id: 'upd',
      resources: {
        typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources',
        value: Buffer.from(JSON.stringify(resources)),
      },
    },
    NS,
  );
  const { stats } = await task.Stats({ id: 'upd' }, NS);
  expect(decodeShimMessage<any>(stats.typeUrl, stats.value).pids.limit).toBe(77);
  await expect(
    task.Update({ id: 'upd', resources: { typeUrl: 'x', value: Buffer.from('{nope') } }, NS),
  ).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
  });
  await task.Kill({ id: 'upd', signal: 9 }, NS);
  await task.Wait({ id: 'upd' }, NS);
  await task.Delete({ id: 'upd' }, NS);
});

test('containers of one namespace share one shim, which exits after the last Shutdown; other groups get their own', async () => {
  const b1 = world.bundle('g1', { args: ['sleep', '1000'] });
  const b2 = world.bundle('g2', { args: ['sleep', '1000'] });
  const b3 = world.bundle('g3', {
    args: ['sleep', '1000'],
    annotations: { 'io.containerd.berth.v1.group': 'pod-a' },
  });
  const s1 = await world.start('g1', b1);
  const s2 = await world.start('g2', b2);
  const s3 = await world.start('g3', b3);
  expect(s2.address).toBe(s1.address);
  expect(s3.address).not.toBe(s1.address);
  const pid1 = (await s1.task.Connect({ id: 'g1' }, NS)).shimPid;
  expect((await s2.task.Connect({ id: 'g2' }, NS)).shimPid).toBe(pid1);
  expect((await s3.task.Connect({ id: 'g3' }, NS)).shimPid).not.toBe(pid1);
  for (const [id, b, s] of [
    ['g1', b1, s1],
    ['g2', b2, s2],
  ] as const) {
    await s.task.Create({ id, bundle: b }, NS);
    await s.task.Start({ id }, NS);
  }
  expect((await s1.task.Connect({ id: 'g2' }, NS)).taskPid).toBeGreaterThan(0);
  for (const [id, s] of [
    ['g1', s1],
    ['g2', s2],
  ] as const) {
    await s.task.Kill({ id, signal: 9 }, NS);
    await s.task.Wait({ id }, NS);
    await s.task.Delete({ id }, NS);
    await s.task.Shutdown({ id }, NS);
    if (id === 'g1') {
      await sleep(200);
      expect(alive(pid1)).toBe(true);
    }
  }
  await waitUntil('the shared shim exits', () => !alive(pid1));
  // A shim that never gets a container (its Create never came) is still running here; Shutdown ends it.
  const pid3 = (await s3.task.Connect({ id: 'g3' }, NS)).shimPid;
  await s3.task.Shutdown({ id: 'g3' }, NS);
  await waitUntil('the unused shim exits', () => !alive(pid3));
});

test('BERTH_SHIM_GROUPING=container gives each container its own shim, as containerd does', async () => {
  const env = { BERTH_SHIM_GROUPING: 'container' };
  const s1 = await world.start('own1', world.bundle('own1', { args: ['true'] }), 'testns', env);
  const s2 = await world.start('own2', world.bundle('own2', { args: ['true'] }), 'testns', env);
  expect(s1.address).not.toBe(s2.address);
});

test('delete cleans up after a shim killed with SIGKILL: runtime state, rootfs mount, socket; prints a DeleteResponse', async () => {
  const bundle = world.bundle('gone', { args: ['sleep', '1000'], root: 'rootfs' });
  const { task, address } = await world.start('gone', bundle);
  const rootfsMount = [{ type: 'bind', source: rootfs, options: ['rbind', 'ro'] }];
  const { pid } = await task.Create({ id: 'gone', bundle, rootfs: rootfsMount }, NS);
  await task.Start({ id: 'gone' }, NS);
  expect(existsSync(join(bundle, 'rootfs', 'bin', 'busybox'))).toBe(true);
  const [shimPid] = world.shimPids;
  process.kill(shimPid, 'SIGKILL');
  await waitUntil('the shim is gone', () => !alive(shimPid));
  const res = await runShim(
    ['-namespace', 'testns', '-id', 'gone', '-address', world.daemonAddress, '-bundle', bundle, 'delete'],
    {
      cwd: bundle,
      env: world.env,
    },
  );
  expect(res.code).toBe(0);
  const response = decodeMessage<any>('containerd.task.v2.DeleteResponse', res.stdout);
  expect(response.pid).toBe(pid);
  expect(response.exitStatus).toBe(137);
  expect(response.exitedAt.seconds).toBeGreaterThan(0);
  await waitUntil('the container is gone', () => !alive(pid));
  expect(existsSync(join(bundle, 'rootfs', 'bin'))).toBe(false);
  expect(existsSync(join(world.runtimeRoot, 'testns', 'gone'))).toBe(false);
  expect(existsSync(address.replace('unix://', ''))).toBe(false);
});

test('bad requests get typed errors naming what is wrong; the runtime failure message comes through', async () => {
  const bundle = world.bundle('err', { args: ['/bin/no-such-program'] });
  const { task } = await world.start('err', bundle);
  await expect(task.State({ id: 'nope' }, NS)).rejects.toMatchObject({
    code: 'ERR_NOT_FOUND',
    message: expect.stringContaining('nope'),
  });
  await expect(task.Create({ id: 'err', bundle: 'relative/path' }, NS)).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
  });
  await expect(task.Create({ id: 'bad/id', bundle }, NS)).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
  });
  await expect(
    task.Create({ id: 'err', bundle, options: { typeUrl: 'something.Else', value: Buffer.alloc(0) } }, NS),
  ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  await expect(
    task.Create({ id: 'err', bundle, stdout: 'binary:///usr/bin/logger' }, NS),
  ).rejects.toMatchObject({
    code: 'ERR_NOT_IMPLEMENTED',
  });
  await expect(task.Checkpoint({ id: 'err', path: '/tmp/x' }, NS)).rejects.toMatchObject({
    code: 'ERR_NOT_IMPLEMENTED',
  });
  await expect(task.Create({ id: 'err', bundle }, NS)).rejects.toThrow(
    /OCI runtime create failed.*no-such-program/,
  );
  await expect(task.State({ id: 'err' }, NS)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  const good = world.bundle('good', { args: ['sleep', '1000'] });
  await task.Create({ id: 'good', bundle: good }, NS);
  await expect(task.Create({ id: 'good', bundle: good }, NS)).rejects.toMatchObject({
    code: 'ERR_FAILED_PRECONDITION',
  });
  await expect(task.Delete({ id: 'good', execId: 'nope' }, NS)).rejects.toMatchObject({
    code: 'ERR_NOT_FOUND',
  });
  await task.Delete({ id: 'good' }, NS);
  await expect(task.Start({ id: 'good' }, NS)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  // A runtime binary that does not exist, named through containerd.runc.v1.Options.
  const { encodeShimMessage } = await import('../src/protos');
  const options = {
    typeUrl: 'containerd.runc.v1.Options',
    value: encodeShimMessage('containerd.runc.v1.Options', { binaryName: '/nonexistent/runc' }),
  };
  await expect(task.Create({ id: 'err2', bundle, options }, NS)).rejects.toThrow(
    /OCI runtime create failed.*\/nonexistent\/runc/,
  );
});

test("containerd's client's options for non-runc runtimes (containerd.linux.runc.RuncOptions) choose the runtime and its root", async () => {
  // A runtime that logs each command and hands it to runc: proof the shim ran it.
  const log = join(world.dir, 'wrapper.log');
  const wrapper = join(world.dir, 'my-runc');
  writeFileSync(wrapper, `#!/bin/sh\necho "$@" >> ${log}\nexec runc "$@"\n`, { mode: 0o755 });
  const root = join(world.dir, 'my-runc-root');
  const bundle = world.bundle('v1opts', { args: ['sh', '-c', 'echo via-wrapper'] });
  const out = world.reader('v1opts-out');
  const { task } = await world.start('v1opts', bundle);
  const options = {
    typeUrl: 'containerd.linux.runc.RuncOptions',
    value: encodeMessage('containerd.linux.runc.RuncOptions', { runtime: wrapper, runtimeRoot: root }),
  };
  await task.Create({ id: 'v1opts', bundle, stdout: out.path, options }, NS);
  // runc keeps the container's state under the given root, per namespace, as containerd's v1 runtime.
  expect(existsSync(join(root, 'testns', 'v1opts', 'state.json'))).toBe(true);
  await task.Start({ id: 'v1opts' }, NS);
  expect(await task.Wait({ id: 'v1opts' }, NS)).toMatchObject({ exitStatus: 0 });
  await out.ended;
  expect(out.text()).toBe('via-wrapper\n');
  await task.Delete({ id: 'v1opts' }, NS);
  const commands = readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ').find((w) => ['create', 'start', 'delete'].includes(w)));
  expect(commands).toEqual(['create', 'start', 'delete']);
  expect(readFileSync(log, 'utf8')).toContain(`--root ${join(root, 'testns')}`);
  // The `delete` action of a dead shim would use the same runtime and root.
  expect(readFileSync(join(bundle, 'runtime'), 'utf8')).toBe(wrapper);

  // An Any of a type nobody defined for runc is refused, the type named.
  const unknown = { typeUrl: 'types.acme.io/acme.RuntimeOptions', value: Buffer.alloc(0) };
  await expect(task.Create({ id: 'v1bad', bundle, options: unknown }, NS)).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: expect.stringContaining('"types.acme.io/acme.RuntimeOptions"'),
  });
});

test('-v prints the version; unknown actions and missing identities fail with a message', async () => {
  const v = await runShim(['-v']);
  expect(v.code).toBe(0);
  expect(v.stdout.toString()).toMatch(/containerd-shim-berth-v1:\n\s+Version:\s+\d+\.\d+\.\d+/);
  const bad = await runShim(['-namespace', 'x', 'frobnicate']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('unknown action "frobnicate"');
  const noId = await runShim(['-namespace', 'x', 'start'], { cwd: world.dir, env: world.env });
  expect(noId.code).toBe(1);
  expect(noId.stderr).toContain('shim id cannot be empty');
});

test('an OOM kill in the container is reported as /tasks/oom before the exit', async () => {
  const bundle = world.bundle('oom', {
    args: ['sh', '-c', 'x=0123456789abcdef; while true; do x=$x$x; done'],
    memoryLimit: 32 * 1024 * 1024,
  });
  const { task } = await world.start('oom', bundle);
  await task.Create({ id: 'oom', bundle }, NS);
  await task.Start({ id: 'oom' }, NS);
  expect(await task.Wait({ id: 'oom' }, NS)).toMatchObject({ exitStatus: 137 });
  await world.events.waitFor('/tasks/exit', 'oom');
  const topics = world.events.topics('oom');
  expect(topics).toContain('/tasks/oom');
  expect(topics.indexOf('/tasks/oom')).toBeLessThan(topics.indexOf('/tasks/exit'));
  expect(world.events.events.find((e) => e.topic === '/tasks/oom')!.typeUrl).toBe(
    'containerd.events.TaskOOM',
  );
  await task.Delete({ id: 'oom' }, NS);
});

test('start and delete, which run once per container, load no protobuf or gRPC library', async () => {
  const { execFileSync } = await import('node:child_process');
  const dist = join(__dirname, '..', 'dist');
  const loaded = execFileSync(process.execPath, [
    '-e',
    `require(${JSON.stringify(join(dist, 'start.js'))}); require(${JSON.stringify(join(dist, 'cleanup.js'))});
     console.log(JSON.stringify(Object.keys(require.cache).filter((k) => /protobufjs|grpc|@berth\\/api|packages\\/api/.test(k))))`,
  ]).toString();
  // Of @berth/api, only its time module (delete stamps the exit) and the errors it throws.
  const api = (JSON.parse(loaded) as string[]).map((k) => k.replace(/^.*\/packages\/api\//, 'api/'));
  expect(api.sort()).toEqual(['api/dist/errors.js', 'api/dist/time.js']);
});
