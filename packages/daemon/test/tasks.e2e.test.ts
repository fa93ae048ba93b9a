/**
 * Containers run by stock `ctr` against bin/berthd, with Debian's containerd-shim-runc-v2
 * as the runtime: output and exit codes, the task commands, a terminal, berthd killed
 * with running containers and restarted, a shim killed under its task, and nothing left
 * behind once everything is deleted. Needs root, runc, the containerd package and a build.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  buildImage,
  ctr,
  type Daemon,
  makeTempDir,
  removeDir,
  repoRoot,
  run,
  startBerthd,
  stopChild,
  writeOciLayout,
} from '@berth/testkit';
import {
  canRunTasks,
  isAlive,
  killLeftovers,
  makeBusyboxRootfs,
  mountsUnder,
  shimPids,
  waitFor,
} from './tasks-fixtures';

/** The runtimes the suite runs with: containerd's runc shim, and berth's own once it is built. */
const RUNTIMES: [string, string][] = [['io.containerd.runc.v2', 'runc']];
if (fs.existsSync(path.join(repoRoot, 'packages', 'shim', 'dist', 'main.js'))) {
  RUNTIMES.push(['io.containerd.berth.v1', 'berth']);
}
const describeRoot = canRunTasks() ? describe.each(RUNTIMES) : describe.skip.each(RUNTIMES);

describeRoot('tasks through stock ctr with %s', (RUNTIME, short) => {
  const NS = `berth-e2e-${process.pid}-${short}`;
  let dir: string;
  let rootfs: string;
  let daemon: Daemon | undefined;
  let events: ChildProcess | undefined;
  let eventLines = '';

  const c = (...args: string[]) => ctr(daemon!.address, ['-n', NS, ...args], { timeoutMs: 60_000 });
  const runArgs = (...args: string[]) => ['run', '--runtime', RUNTIME, '--rootfs', ...args];

  const ctrRun = (...args: string[]) => c(...runArgs(...args));
  const taskDir = () => path.join(dir, 'state', 'io.containerd.runtime.v2.task', NS);

  /** `ctr tasks ls` as {id: [pid, status]}. */
  async function tasks(): Promise<Record<string, [string, string]>> {
    const r = await c('tasks', 'ls');
    expect(r.stderr).toBe('');
    const rows = r.stdout.trim().split('\n').slice(1).filter(Boolean);
    return Object.fromEntries(
      rows.map((l) => l.trim().split(/\s+/)).map(([id, pid, st]) => [id!, [pid!, st!]]),
    );
  }

  /** The pid of the shim serving `id` (its argv names the id). */
  function shimOf(id: string): number {
    const pid = shimPids(NS).find((p) => {
      const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return argv[argv.indexOf('-id') + 1] === id;
    });
    if (pid === undefined) throw new Error(`no shim for ${id}`);
    return pid;
  }

  beforeAll(async () => {
    dir = makeTempDir('berth-tasks-e2e-');
    rootfs = makeBusyboxRootfs(path.join(dir, 'busybox'));
    daemon = await startBerthd({ dir });
    events = spawn('/usr/bin/ctr', ['--address', daemon.address, 'events'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    events.stdout!.on('data', (b: Buffer) => {
      eventLines += b.toString();
    });
    // ctr subscribes asynchronously: only once it relays an event of ours is it surely listening.
    await waitFor('ctr events to subscribe', async () => {
      await ctr(daemon.address, ['namespaces', 'label', 'default', `events-ready=${Date.now()}`]);
      return eventLines.includes('/namespaces/update');
    });
  });

  afterAll(async () => {
    if (events) await stopChild(events);
    await daemon?.stop();
    await killLeftovers(NS, dir);
    removeDir(dir);
  });

  it('ctr run --rm prints the output and passes the exit code on', async () => {
    const hi = await ctrRun('--rm', rootfs, 't1', '/bin/echo', 'hi');
    expect(hi).toMatchObject({ code: 0, stdout: 'hi\n', stderr: '' });
    const three = await ctrRun('--rm', rootfs, 't1', '/bin/sh', '-c', 'echo out; echo err >&2; exit 3');
    expect(three).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    expect(await tasks()).toEqual({});
    expect((await c('containers', 'ls', '-q')).stdout).toBe('');
    await waitFor('the events of t1', () => (eventLines.match(/ \/tasks\/delete /g) ?? []).length >= 2);
    const lifecycle = eventLines
      .split('\n')
      .filter((l) => l.includes(` ${NS} /`))
      .map((l) => l.split(' ')[5]);
    expect(lifecycle.slice(0, 7)).toEqual([
      '/containers/create',
      '/tasks/create',
      '/tasks/start',
      '/tasks/exit',
      '/tasks/delete',
      '/containers/delete',
      '/containers/create',
    ]);
  });

  it('ctr run --rm IMAGE: snapshots mounted by the shim, --env, --mount, --snapshotter native', async () => {
    const image = 'docker.io/library/busybox:berth-tasks';
    const archive = path.join(dir, 'busybox.tar');
    writeOciLayout(
      archive,
      buildImage({
        layers: ['busybox'],
        config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=1'] },
      }),
      image,
    );
    expect((await c('images', 'import', archive)).code).toBe(0);
    expect(await c('run', '--rm', '--runtime', RUNTIME, image, 'i1', 'echo', 'hi')).toMatchObject({
      code: 0,
      stdout: 'hi\n',
    });
    fs.writeFileSync(path.join(dir, 'shared.txt'), 'from the host\n');
    const opts = ['--env', 'FOO=bar', '--mount', `type=bind,src=${dir},dst=/host,options=rbind:ro`];
    const r = await c(
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      ...opts,
      image,
      'i2',
      'sh',
      '-c',
      'echo $FOO $FROM_IMAGE; cat /host/shared.txt; exit 3',
    );
    expect(r).toMatchObject({ code: 3, stdout: 'bar 1\nfrom the host\n' });
    const native = await c(
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      '--snapshotter',
      'native',
      image,
      'i3',
      'sh',
      '-c',
      'echo $((6*7))',
    );
    expect(native).toMatchObject({ code: 0, stdout: '42\n' });
    // Only the image's committed layer is left: every container's active snapshot went with it.
    for (const snapshotter of ['overlayfs', 'native']) {
      const ls = await c('snapshots', '--snapshotter', snapshotter, 'ls');
      expect(ls.stdout).not.toMatch(/Active/);
    }
    expect(mountsUnder(dir)).toEqual([]);
    expect((await c('images', 'rm', image)).code).toBe(0);
  });

  it('ctr run -d, then tasks ls, exec, ps, pause, resume, metrics, kill and delete', async () => {
    expect((await ctrRun('-d', rootfs, 'svc', '/bin/sleep', '1000')).code).toBe(0);
    const [pid, status] = (await tasks()).svc!;
    expect(status).toBe('RUNNING');
    const exec = await c('tasks', 'exec', '--exec-id', 'e1', 'svc', '/bin/sh', '-c', 'echo inside; exit 4');
    expect(exec).toMatchObject({ code: 4, stdout: 'inside\n' });
    expect((await c('tasks', 'ps', 'svc')).stdout).toMatch(
      new RegExp(`^PID\\s+INFO\\s*\\n${pid}\\s+-\\s*\\n$`),
    );
    expect((await c('tasks', 'pause', 'svc')).code).toBe(0);
    expect((await tasks()).svc).toEqual([pid, 'PAUSED']);
    expect((await c('tasks', 'resume', 'svc')).code).toBe(0);
    expect((await tasks()).svc).toEqual([pid, 'RUNNING']);
    expect((await c('tasks', 'metrics', 'svc')).stdout).toMatch(/memory\.usage_in_bytes/);

    const early = await c('tasks', 'delete', 'svc');
    expect(early.code).toBe(1);
    expect(early.stderr).toContain('task must be stopped before deletion: running: failed precondition');
    expect((await c('tasks', 'kill', '-s', 'KILL', 'svc')).code).toBe(0);
    await waitFor('svc to stop', async () => (await tasks()).svc?.[1] === 'STOPPED');
    const del = await c('tasks', 'delete', 'svc');
    expect(del.code).toBe(0);
    expect(del.stderr).toContain('task svc exit with non-zero exit code 137');
    expect((await c('containers', 'rm', 'svc')).code).toBe(0);
    const missing = await c('tasks', 'kill', 'svc');
    expect(missing.stderr).toContain('not found');
  });

  it('ctr run -t gives the container a terminal', async () => {
    const cmd = `/usr/bin/ctr --address ${daemon!.address} -n ${NS} run -t --rm --runtime ${RUNTIME} --rootfs ${rootfs} tty /bin/sh -c 'tty; exit 5'`;
    const r = await run('script', ['-qec', cmd, '/dev/null'], { timeoutMs: 60_000 });
    expect(r.stdout).toContain('/dev/pts/0');
    expect(r.code).toBe(5);
    const echo = await run(
      'script',
      ['-qec', cmd.replace(`tty /bin/sh -c 'tty; exit 5'`, 'tty2 /bin/sh'), '/dev/null'],
      {
        input: 'echo $((6*7))\nexit 6\n',
        timeoutMs: 60_000,
      },
    );
    expect(echo.stdout).toMatch(/^42\r*$/m);
    expect(echo.code).toBe(6);
  });

  it('berthd killed with 20 containers running: the restarted berthd reconnects, a task that exited meanwhile keeps its code', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `c${i}`);
    const started = await Promise.all(
      ids.map((id) =>
        ctrRun('-d', rootfs, id, '/bin/sh', '-c', 'trap "exit 7" TERM; while true; do sleep 1; done'),
      ),
    );
    expect(started.map((r) => `${r.code} ${r.stderr}`)).toEqual(ids.map(() => '0 '));
    const before = await tasks();
    expect(Object.values(before).map(([, s]) => s)).toEqual(ids.map(() => 'RUNNING'));

    await daemon!.stop('SIGKILL');
    // With berthd down, c0 ends; its shim keeps the exit.
    process.kill(Number(before.c0![0]), 'SIGTERM');
    await waitFor('c0 to exit', () => !isAlive(Number(before.c0![0])));
    daemon = await startBerthd({ dir });

    const after = await tasks();
    expect(Object.keys(after).sort()).toEqual([...ids].sort());
    expect(after.c0).toEqual([before.c0![0], 'STOPPED']);
    for (const id of ids.slice(1)) expect(after[id]).toEqual([before[id]![0], 'RUNNING']);
    const exec = await c('tasks', 'exec', '--exec-id', 'x', 'c5', '/bin/echo', 'reconnected');
    expect(exec).toMatchObject({ code: 0, stdout: 'reconnected\n' });

    const c0 = await c('tasks', 'delete', 'c0');
    expect(c0.stderr).toContain('task c0 exit with non-zero exit code 7');
    await Promise.all(ids.slice(1).map((id) => c('tasks', 'kill', id)));
    await waitFor('every task to stop', async () =>
      Object.values(await tasks()).every(([, s]) => s === 'STOPPED'),
    );
    const deleted = await Promise.all(ids.slice(1).map((id) => c('tasks', 'delete', id)));
    for (const d of deleted) expect(d.stderr).toMatch(/exit with non-zero exit code 7/);
    await Promise.all(ids.map((id) => c('containers', 'rm', id)));
    expect(await tasks()).toEqual({});
    await waitFor('every shim to exit', () => shimPids(NS).length === 0);
  });

  it('berthd stopped with SIGTERM leaves its containers running and its sockets removed', async () => {
    expect((await ctrRun('-d', rootfs, 'stays', '/bin/sleep', '1000')).code).toBe(0);
    const [pid] = (await tasks()).stays!;
    expect(await daemon!.stop('SIGTERM')).toBe(0);
    expect(isAlive(Number(pid))).toBe(true);
    expect(fs.existsSync(daemon!.address)).toBe(false);
    expect(fs.existsSync(`${daemon!.address}.ttrpc`)).toBe(false);
    daemon = await startBerthd({ dir });
    expect((await tasks()).stays).toEqual([pid, 'RUNNING']);
    expect((await c('tasks', 'kill', '-s', 'KILL', 'stays')).code).toBe(0);
    await waitFor('stays to stop', async () => (await tasks()).stays?.[1] === 'STOPPED');
    expect((await c('tasks', 'delete', 'stays')).code).toBe(0);
    expect((await c('containers', 'rm', 'stays')).code).toBe(0);
  });

  it('a shim killed with SIGKILL leaves its task STOPPED, and deleting it leaves nothing behind', async () => {
    expect((await ctrRun('-d', rootfs, 'victim', '/bin/sleep', '1000')).code).toBe(0);
    const [pid] = (await tasks()).victim!;
    const address = fs.readFileSync(path.join(taskDir(), 'victim', 'address'), 'utf8').replace('unix://', '');
    process.kill(shimOf('victim'), 'SIGKILL');
    await waitFor('victim to be reported stopped', async () => (await tasks()).victim?.[1] === 'STOPPED');
    expect(isAlive(Number(pid))).toBe(false);
    expect(fs.existsSync(address)).toBe(false);
    const del = await c('tasks', 'delete', 'victim');
    expect(del.stderr).toContain('task victim exit with non-zero exit code 137');
    expect((await c('containers', 'rm', 'victim')).code).toBe(0);

    // Nothing left of any test: no shim, no mount, no bundle, no work dir.
    expect(shimPids(NS)).toEqual([]);
    expect(mountsUnder(dir)).toEqual([]);
    expect(fs.readdirSync(taskDir())).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'root', 'io.containerd.runtime.v2.task', NS))).toEqual([]);
  });
});
