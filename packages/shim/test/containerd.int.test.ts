// Real containerd (Debian's 1.6) running containers through containerd-shim-berth-v1 as
// runtime io.containerd.berth.v1, driven with the stock ctr (root, runc).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerdInstalled, ctr, type Daemon, startContainerd } from '@berth/testkit';
import { alive, makeRootfs, requireBuilt, SHIM_BIN, sleep, waitUntil } from './helpers';

jest.setTimeout(120_000);

const RUNTIME = 'io.containerd.berth.v1';
let dir: string;
let rootfs: string;
let daemon: Daemon;
let address: string;
const run = (args: string[], opts = {}) => ctr(address, args, { timeoutMs: 60_000, ...opts });

const maybe = containerdInstalled() ? describe : describe.skip;

maybe('containerd with io.containerd.berth.v1', () => {
  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(join(tmpdir(), 'berth-shim-ctrd-'));
    rootfs = makeRootfs(dir);
    // containerd finds runtime io.containerd.berth.v1 as containerd-shim-berth-v1 on its PATH.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(SHIM_BIN, join(bin, 'containerd-shim-berth-v1'));
    daemon = await startContainerd({
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        BERTH_SHIM_SOCKET_DIR: join(dir, 's'),
        BERTH_SHIM_RUNTIME_ROOT: join(dir, 'runc'),
      },
    });
    address = daemon.address;
  });

  afterAll(async () => {
    // Whatever a failed test left: tasks killed and deleted through containerd, then the daemon.
    if (daemon) {
      const tasks = await run(['tasks', 'ls', '-q']);
      for (const id of tasks.stdout.split('\n').filter(Boolean)) {
        await run(['tasks', 'kill', '-s', 'SIGKILL', id]);
        await run(['tasks', 'delete', '-f', id]);
      }
      const containers = await run(['containers', 'ls', '-q']);
      for (const id of containers.stdout.split('\n').filter(Boolean)) await run(['containers', 'rm', id]);
      await daemon.dispose();
    }
    if (dir) {
      // No shim may outlive the test: every socket it served is gone.
      const sockets = existsSync(join(dir, 's')) ? readdirSync(join(dir, 's')) : [];
      rmSync(dir, { recursive: true, force: true });
      expect(sockets).toEqual([]);
    }
  });

  test('ctr run --rm prints the output and propagates exit codes', async () => {
    const hi = await run([
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      '--rootfs',
      rootfs,
      'test1',
      '/bin/echo',
      'hi',
    ]);
    expect(hi).toMatchObject({ code: 0, stdout: 'hi\n' });
    const three = await run([
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      '--rootfs',
      rootfs,
      'test2',
      '/bin/sh',
      '-c',
      'exit 3',
    ]);
    expect(three.code).toBe(3);
    const err = await run([
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      '--rootfs',
      rootfs,
      'test3',
      '/bin/sh',
      '-c',
      'echo oops >&2; exit 0',
    ]);
    expect(err).toMatchObject({ code: 0, stderr: 'oops\n' });
    expect((await run(['containers', 'ls', '-q'])).stdout).toBe('');
  });

  test('ctr run -d, then tasks exec, ps, pause, resume, kill, delete; ctr events shows the lifecycle', async () => {
    const events = spawn('/usr/bin/ctr', ['--address', address, 'events'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let log = '';
    events.stdout.on('data', (b: Buffer) => {
      log += b;
    });
    try {
      await sleep(300);
      expect(
        (await run(['run', '-d', '--runtime', RUNTIME, '--rootfs', rootfs, 'web', '/bin/sleep', '1000']))
          .code,
      ).toBe(0);
      const ls = await run(['tasks', 'ls']);
      expect(ls.stdout).toMatch(/web\s+\d+\s+RUNNING/);
      const exec = await run([
        'tasks',
        'exec',
        '--exec-id',
        'x1',
        'web',
        '/bin/sh',
        '-c',
        'echo $((6*7)); exit 4',
      ]);
      expect(exec).toMatchObject({ code: 4, stdout: '42\n' });
      const bg = spawn(
        '/usr/bin/ctr',
        ['--address', address, 'tasks', 'exec', '--exec-id', 'x2', 'web', '/bin/sleep', '1000'],
        {
          stdio: 'ignore',
        },
      );
      const ps = async () => (await run(['tasks', 'ps', 'web'])).stdout;
      let table = '';
      for (let i = 0; i < 100 && !/x2/.test(table); i++) {
        table = await ps();
        if (!/x2/.test(table)) await sleep(50);
      }
      expect(table).toMatch(/PID\s+INFO/);
      expect(table).toMatch(/\d+\s+&ProcessDetails\{ExecID:x2,/);
      expect((await run(['tasks', 'pause', 'web'])).code).toBe(0);
      expect((await run(['tasks', 'ls'])).stdout).toMatch(/web\s+\d+\s+PAUSED/);
      expect((await run(['tasks', 'resume', 'web'])).code).toBe(0);
      expect((await run(['tasks', 'ls'])).stdout).toMatch(/web\s+\d+\s+RUNNING/);
      const metrics = await run(['tasks', 'metrics', 'web']);
      expect(metrics.code).toBe(0);
      expect(metrics.stdout).toMatch(/memory\.usage_in_bytes|memory\.usage/);
      expect((await run(['tasks', 'kill', '-a', '-s', 'SIGKILL', 'web'])).code).toBe(0);
      await new Promise((r) => bg.once('exit', r));
      for (let i = 0; i < 100; i++) {
        if (/web\s+\d+\s+STOPPED/.test((await run(['tasks', 'ls'])).stdout)) break;
        await sleep(50);
      }
      expect((await run(['tasks', 'ls'])).stdout).toMatch(/web\s+\d+\s+STOPPED/);
      expect((await run(['tasks', 'delete', 'web'])).code).toBe(0);
      expect((await run(['containers', 'rm', 'web'])).code).toBe(0);
      await sleep(500);
    } finally {
      events.kill();
    }
    for (const topic of [
      '/tasks/create',
      '/tasks/start',
      '/tasks/exec-added',
      '/tasks/exec-started',
      '/tasks/paused',
      '/tasks/resumed',
      '/tasks/exit',
      '/tasks/delete',
    ]) {
      expect(log).toContain(topic);
    }
    expect(log).toMatch(/\/tasks\/exit\s+\{"container_id":"web","id":"x1","pid":\d+,"exit_status":4/);
  });

  test('ctr run -t gives a working terminal (under script, which provides the pty)', async () => {
    const cmd = `/usr/bin/ctr --address ${address} run -t --rm --runtime ${RUNTIME} --rootfs ${rootfs} tty1 /bin/sh -c 'tty; echo done'`;
    const res = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, COLUMNS: '90', LINES: '20' },
      });
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b;
      });
      child.on('exit', (code) => resolve({ code, out }));
    });
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/\/dev\/pts\/\d+/);
    expect(res.out).toContain('done');
    // A resize that races the exit is not an error.
    expect(res.out).not.toContain('resize pty');
  });

  test('ctr tasks exec -t of a million lines delivers all of them (under script)', async () => {
    expect(
      (await run(['run', '-d', '--runtime', RUNTIME, '--rootfs', rootfs, 'seqtty', '/bin/sleep', '1000']))
        .code,
    ).toBe(0);
    const cmd = `/usr/bin/ctr --address ${address} tasks exec -t --exec-id seq seqtty /bin/seq 1000000`;
    const res = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => chunks.push(b));
      child.on('exit', (code) => resolve({ code, out: Buffer.concat(chunks).toString() }));
    });
    await run(['tasks', 'kill', '-s', 'SIGKILL', 'seqtty']);
    for (let i = 0; i < 100 && !/seqtty\s+\d+\s+STOPPED/.test((await run(['tasks', 'ls'])).stdout); i++)
      await sleep(50);
    await run(['tasks', 'delete', 'seqtty']);
    await run(['containers', 'rm', 'seqtty']);
    expect(res.code).toBe(0);
    const lines = res.out.split(/\r*\n/).filter(Boolean);
    expect(lines.length).toBe(1_000_000);
    expect(lines[lines.length - 1]).toBe('1000000');
  });

  test("ctr run --no-pivot: the v1 runtime's CreateOptions containerd's client sends are accepted and used", async () => {
    // For a runtime not named io.containerd.runc.*, containerd's client packs task options
    // as containerd.linux.runc.CreateOptions.
    expect(
      (
        await run([
          'run',
          '-d',
          '--no-pivot',
          '--runtime',
          RUNTIME,
          '--rootfs',
          rootfs,
          'nopivot',
          '/bin/sleep',
          '1000',
        ])
      ).code,
    ).toBe(0);
    const bundle = join(daemon.state, 'io.containerd.runtime.v2.task', 'default', 'nopivot');
    expect(JSON.parse(readFileSync(join(bundle, 'options.json'), 'utf8'))).toMatchObject({
      noPivotRoot: true,
    });
    await run(['tasks', 'kill', '-s', 'SIGKILL', 'nopivot']);
    for (let i = 0; i < 100 && !/nopivot\s+\d+\s+STOPPED/.test((await run(['tasks', 'ls'])).stdout); i++)
      await sleep(50);
    expect((await run(['tasks', 'delete', 'nopivot'])).code).toBe(0);
    await run(['containers', 'rm', 'nopivot']);
  });

  test('containers of one namespace share one shim process', async () => {
    for (const id of ['s1', 's2', 's3']) {
      expect(
        (await run(['run', '-d', '--runtime', RUNTIME, '--rootfs', rootfs, id, '/bin/sleep', '1000'])).code,
      ).toBe(0);
    }
    expect(readdirSync(join(dir, 's'))).toHaveLength(1);
    const shimPids = new Set<number>();
    for (const id of ['s1', 's2', 's3']) {
      const pid = Number((await run(['tasks', 'ls'])).stdout.match(new RegExp(`${id}\\s+(\\d+)`))![1]);
      const status = (await import('node:fs')).readFileSync(`/proc/${pid}/status`, 'utf8');
      shimPids.add(Number(/PPid:\s+(\d+)/.exec(status)![1]));
    }
    expect(shimPids.size).toBe(1);
    const [shimPid] = shimPids;
    for (const id of ['s1', 's2', 's3']) {
      await run(['tasks', 'kill', '-s', 'SIGKILL', id]);
      for (
        let i = 0;
        i < 100 &&
        !/STOPPED/.test((await run(['tasks', 'ls'])).stdout.split('\n').find((l) => l.startsWith(id)) ?? '');
        i++
      )
        await sleep(50);
      expect((await run(['tasks', 'delete', id])).code).toBe(0);
      await run(['containers', 'rm', id]);
    }
    await waitUntil('the shared shim exits after the last container', () => !alive(shimPid));
  });
});
