/**
 * `berth run` and `berth tasks …` against real daemons: Debian's containerd (with its runc
 * shim) and berthd, the same cases for both. Images are built offline by testkit and imported
 * with the stock ctr. Needs root, runc and overlayfs. Every task started is deleted, every
 * container removed, and the FIFO directory berth used is checked empty at the end.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  berth,
  buildImage,
  containerdInstalled,
  ctr,
  type Daemon,
  file,
  makeTempDir,
  type RunResult,
  removeDir,
  repoRoot,
  run,
  startBerthd,
  startContainerd,
  writeOciLayout,
} from '@berth/testkit';

const isRoot = process.getuid?.() === 0;
const built = existsSync(join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const runc = existsSync('/usr/bin/runc') || existsSync('/usr/sbin/runc');
const daemons: [string, () => Promise<Daemon>][] = [];
// containerd finds berth's shim (runtime io.containerd.berth.v1) on its PATH, as any shim.
const withBerthShim = { PATH: `${join(repoRoot, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}` };
if (built && isRoot && runc && containerdInstalled()) {
  daemons.push(['containerd', () => startContainerd({ env: withBerthShim })]);
}
if (built && isRoot && runc && existsSync(join(repoRoot, 'packages', 'daemon', 'dist', 'main.js'))) {
  daemons.push(['berthd', () => startBerthd()]);
}
if (daemons.length === 0) it.skip('needs root, runc, a built CLI (pnpm build) and a daemon', () => {});

const BUSYBOX = 'berth.test/run/busybox:latest';
const USERIMG = 'berth.test/run/user:latest';
const NS = 'run-e2e';

describe.each(daemons)('berth run and tasks against %s', (_name, start) => {
  let daemon: Daemon;
  let work: string;
  let fifoDir: string;

  beforeAll(async () => {
    daemon = await start();
    work = makeTempDir('berth-run-e2e-');
    fifoDir = join(work, 'fifo');
    const busybox = buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } });
    writeOciLayout(join(work, 'busybox.tar'), busybox, BUSYBOX);
    // An image whose config names a user, and whose /etc/group (in an upper layer) puts that
    // user in a supplementary group: resolved in the container's own files, never the host's.
    const user = buildImage({
      layers: ['busybox', [file('/etc/group', 'root:x:0:\nnobody:x:65534:\nstaff:x:50:nobody\n')]],
      config: { Cmd: ['/bin/id'], Env: ['PATH=/bin', 'FROM_IMAGE=yes'], User: 'nobody', WorkingDir: '/tmp' },
    });
    writeOciLayout(join(work, 'user.tar'), user, USERIMG);
    for (const [tar, extra] of [
      ['busybox.tar', []],
      // Left packed: berth run unpacks it through the daemon's Diff service.
      ['user.tar', ['--no-unpack']],
    ] as const) {
      const r = await ctr(daemon.address, ['-n', NS, 'images', 'import', ...extra, join(work, tar)]);
      if (r.code !== 0) throw new Error(`import ${tar}: ${r.stderr}`);
    }
  });

  afterAll(async () => {
    if (daemon) {
      // Nothing a failed test left may outlive the daemon: kill and delete tasks, remove containers.
      const tasks = await ctr(daemon.address, ['-n', NS, 'tasks', 'ls', '-q']);
      for (const id of tasks.stdout.split('\n').filter(Boolean)) {
        await ctr(daemon.address, ['-n', NS, 'tasks', 'rm', '-f', id]);
      }
      const containers = await ctr(daemon.address, ['-n', NS, 'containers', 'ls', '-q']);
      for (const id of containers.stdout.split('\n').filter(Boolean)) {
        await ctr(daemon.address, ['-n', NS, 'containers', 'rm', id]);
      }
      await daemon.dispose();
    }
    if (work) removeDir(work);
  });

  /** Every berth command that ended removed its FIFOs (a detached task's: tasks delete or attach did). */
  const expectNoFifos = () => {
    if (existsSync(fifoDir)) expect(readdirSync(fifoDir)).toEqual([]);
  };

  const b = (args: string[], input?: string): Promise<RunResult> =>
    berth(daemon.address, ['-n', NS, ...args], input === undefined ? {} : { input });
  const c = (args: string[]): Promise<RunResult> => ctr(daemon.address, ['-n', NS, ...args]);
  /** `berth run` with our FIFO directory, so the test can see it cleaned. */
  const runArgs = (...args: string[]) => ['run', '--fifo-dir', fifoDir, ...args];
  const ok = async (args: string[], input?: string): Promise<string> => {
    const r = await b(args, input);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  /** Polls the Tasks API until the task has that status (a task that never gets there fails the test). */
  const waitForStatus = async (id: string, status: string) => {
    const line = new RegExp(`^${id} +\\d+ +${status}$`, 'm');
    for (let i = 0; i < 200; i++) {
      if (line.test((await b(['tasks', 'ls'])).stdout)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`task ${id} never reached ${status}`);
  };
  const containerIds = async () => (await c(['containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
  const snapshotKeys = async (sn = 'overlayfs') =>
    (await c(['snapshots', '--snapshotter', sn, 'ls'])).stdout
      .split('\n')
      .slice(1)
      .map((l) => l.split(/\s+/)[0])
      .filter(Boolean);

  describe('run --rm', () => {
    afterEach(expectNoFifos);
    it('prints what the container prints and leaves no container, snapshot or FIFO', async () => {
      const r = await b(runArgs('--rm', BUSYBOX, 'hi1', 'echo', 'hi'));
      expect(r).toMatchObject({ code: 0, stdout: 'hi\n', stderr: '' });
      expect(await containerIds()).not.toContain('hi1');
      expect(await snapshotKeys()).not.toContain('hi1');
      expect((await c(['tasks', 'ls', '-q'])).stdout).not.toMatch(/^hi1$/m);
    });

    it("runs the README's quick start: 6*7 is 42", async () => {
      const r = await b(runArgs('--rm', BUSYBOX, 'q42', '/bin/sh', '-c', 'echo $((6*7))'));
      expect(r).toMatchObject({ code: 0, stdout: '42\n' });
    });

    it("uses berth's shim by default and containerd's runc shim when asked", async () => {
      await ok(['containers', 'create', BUSYBOX, 'rt1']);
      try {
        const info = JSON.parse((await c(['containers', 'info', 'rt1'])).stdout);
        expect(info.Runtime.Name).toBe('io.containerd.berth.v1');
      } finally {
        await ok(['containers', 'rm', 'rt1']);
      }
      const r = await b(
        runArgs('--rm', '--runtime', 'io.containerd.runc.v2', BUSYBOX, 'rt2', 'echo', 'runc-v2'),
      );
      expect(r).toMatchObject({ code: 0, stdout: 'runc-v2\n' });
    });

    it("exits with the container's exit status, stderr kept apart", async () => {
      const r = await b(runArgs('--rm', BUSYBOX, 'ex3', 'sh', '-c', 'echo out; echo err >&2; exit 3'));
      expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
      expect(await containerIds()).not.toContain('ex3');
    });

    it('reports a signal that killed the container as 128 + its number', async () => {
      const running = b(runArgs('--rm', BUSYBOX, 'sig9', 'sleep', '1000'));
      await waitForStatus('sig9', 'RUNNING');
      await ok(['tasks', 'kill', '-s', 'KILL', 'sig9']);
      expect((await running).code).toBe(137);
      expect(await containerIds()).not.toContain('sig9');
    });

    it('passes our stdin to the process and closes it at its end', async () => {
      const r = await b(
        runArgs('--rm', BUSYBOX, 'cat1', 'sh', '-c', 'cat; echo done'),
        'line one\nline two\n',
      );
      expect(r).toMatchObject({ code: 0, stdout: 'line one\nline two\ndone\n' });
    });

    it('adds --env variables to the image environment', async () => {
      const r = await b(
        runArgs(
          '--rm',
          '--env',
          'A=1',
          '--env',
          'B=two words',
          BUSYBOX,
          'env1',
          'sh',
          '-c',
          'echo "$A|$B|$PATH"',
        ),
      );
      expect(r).toMatchObject({ code: 0, stdout: '1|two words|/bin\n' });
    });

    it('binds a host directory with --mount, read-only when asked', async () => {
      const dir = join(work, 'shared');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'note.txt'), 'from the host\n');
      const r = await b(
        runArgs(
          '--rm',
          '--mount',
          `type=bind,src=${dir},dst=/data,options=rbind:ro`,
          BUSYBOX,
          'mnt1',
          'sh',
          '-c',
          'cat /data/note.txt; touch /data/x 2>/dev/null || echo read-only',
        ),
      );
      expect(r).toMatchObject({ code: 0, stdout: 'from the host\nread-only\n' });
    });

    it('runs with --snapshotter native, unpacking the image there first', async () => {
      const r = await b(runArgs('--rm', '--snapshotter', 'native', BUSYBOX, 'nat1', 'cat', '/etc/passwd'));
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^root:x:0:0:/);
      // The image's layers now live in the native snapshotter too, committed under their chain id.
      expect((await snapshotKeys('native')).some((k) => k.startsWith('sha256:'))).toBe(true);
      expect(await snapshotKeys('native')).not.toContain('nat1');
    });

    it("shares the host's network namespace and hostname with --net-host", async () => {
      const own = await b(runArgs('--rm', BUSYBOX, 'net0', 'ls', '/sys/class/net'));
      expect(own.stdout).toBe('lo\n');
      const host = await b(
        runArgs('--rm', '--net-host', BUSYBOX, 'net1', 'sh', '-c', 'ls /sys/class/net; echo $HOSTNAME'),
      );
      expect(host.code).toBe(0);
      const lines = host.stdout.trim().split('\n');
      expect(lines.pop()).toBe(hostname());
      expect(lines.sort()).toEqual(readdirSync('/sys/class/net').sort());
    });

    it("runs as the image config's user, with its groups, workdir and env (unpacking the image first)", async () => {
      const r = await b(runArgs('--rm', USERIMG, 'usr1'));
      expect(r).toMatchObject({
        code: 0,
        stdout: 'uid=65534(nobody) gid=65534(nobody) groups=50(staff),65534(nobody)\n',
      });
      const env = await b(runArgs('--rm', USERIMG, 'usr2', 'sh', '-c', 'echo $FROM_IMAGE $(pwd)'));
      expect(env.stdout).toBe('yes /tmp\n');
      const root = await b(
        runArgs('--rm', '--user', 'root', '--cwd', '/root', USERIMG, 'usr3', 'sh', '-c', 'id -u; pwd'),
      );
      expect(root.stdout).toBe('0\n/root\n');
    });

    it('gives a terminal with -t: tty is a pts, the size is ours, input reaches the process', async () => {
      const cmd = [
        'stty rows 33 cols 101;',
        process.execPath,
        join(repoRoot, 'bin', 'berth'),
        '-a',
        daemon.address,
        '-n',
        NS,
        'run',
        '--fifo-dir',
        fifoDir,
        '--rm',
        '-t',
        BUSYBOX,
        'tty1',
        'sh',
        '-c',
        `'tty; stty size; read x; echo got-$x; exit 5'`,
      ].join(' ');
      const r = await run('script', ['-qec', cmd, '/dev/null'], { input: 'typed\r' });
      expect(r.code).toBe(5);
      const out = r.stdout.replace(/\r/g, '');
      expect(out).toMatch(/^\/dev\/pts\/\d+$/m);
      expect(out).toMatch(/^33 101$/m);
      expect(out).toMatch(/^got-typed$/m);
    });

    it('forwards a signal berth receives to the container', async () => {
      const child = spawn(
        process.execPath,
        [
          join(repoRoot, 'bin', 'berth'),
          '-a',
          daemon.address,
          '-n',
          NS,
          ...runArgs(
            '--rm',
            BUSYBOX,
            'fwd1',
            'sh',
            '-c',
            'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done',
          ),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready')) resolve();
        });
        child.once('exit', () => reject(new Error(`berth exited before the container was ready: ${out}`)));
      });
      child.kill('SIGTERM');
      expect(await exited).toBe(7);
      expect(out).toBe('ready\ngot-term\n');
      expect(await containerIds()).not.toContain('fwd1');
    });
  });

  describe('failures leave nothing behind', () => {
    afterEach(expectNoFifos);
    it('refuses --rm with --detach as a usage error', async () => {
      const r = await b(['run', '--rm', '-d', BUSYBOX, 'bad1', 'true']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^berth: flags --detach and --rm cannot be specified together/);
    });

    it('names a missing image', async () => {
      const r = await b(runArgs('--rm', 'berth.test/run/missing:1', 'bad2', 'true'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^berth: .*berth\.test\/run\/missing:1.*not found/);
      expect(await containerIds()).not.toContain('bad2');
    });

    it('names an unknown user, and removes the snapshot it had prepared', async () => {
      const r = await b(runArgs('--rm', '--user', 'nosuchuser', BUSYBOX, 'bad3', 'true'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^berth: .*nosuchuser.*not found/);
      expect(await containerIds()).not.toContain('bad3');
      expect(await snapshotKeys()).not.toContain('bad3');
    });

    it('reports a command that does not exist, and cleans up with --rm', async () => {
      const r = await b(runArgs('--rm', BUSYBOX, 'bad4', '/no/such/binary'));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/^berth: .*no\/such\/binary/);
      expect(await containerIds()).not.toContain('bad4');
      expect(await snapshotKeys()).not.toContain('bad4');
    });

    it('refuses an id already taken, without touching that container', async () => {
      await ok(runArgs('-d', BUSYBOX, 'taken', 'sleep', '1000'));
      try {
        const r = await b(runArgs('--rm', BUSYBOX, 'taken', 'true'));
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/^berth: .*already exists/);
        expect((await b(['tasks', 'ls'])).stdout).toMatch(/^taken +\d+ +RUNNING$/m);
      } finally {
        await ok(['tasks', 'rm', '-f', 'taken']);
        await c(['containers', 'rm', 'taken']);
      }
    });

    it('names a missing container in tasks commands', async () => {
      for (const args of [
        ['kill', 'ghost'],
        ['ps', 'ghost'],
        ['pause', 'ghost'],
        ['exec', '--exec-id', 'e', 'ghost', 'true'],
      ]) {
        const r = await b(['tasks', ...args]);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/^berth: .*ghost.*not found/);
      }
      const usage = await b(['tasks', 'exec', 'ghost', 'true']);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toMatch(/exec-id/);
    });
  });

  describe('a detached container through its life', () => {
    const ID = 'life1';
    afterAll(async () => {
      await b(['tasks', 'rm', '-f', ID]);
      await c(['containers', 'rm', ID]);
    });

    it('runs detached, printing nothing', async () => {
      const r = await b(runArgs('-d', BUSYBOX, ID, 'sh', '-c', 'echo started; exec sleep 1000'));
      expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
      expect(await b(['tasks', 'ls'])).toMatchObject({
        stdout: expect.stringMatching(new RegExp(`^${ID} +\\d+ +RUNNING$`, 'm')),
      });
    });

    it('lists tasks exactly as ctr does', async () => {
      expect((await b(['tasks', 'ls'])).stdout).toBe((await c(['tasks', 'ls'])).stdout);
      expect((await b(['tasks', 'ls', '-q'])).stdout).toBe((await c(['tasks', 'ls', '-q'])).stdout);
    });

    it('execs processes: output, exit status, stdin, cwd and user', async () => {
      expect(
        await b(['tasks', 'exec', '--exec-id', 'e1', ID, 'sh', '-c', 'echo in-exec; exit 4']),
      ).toMatchObject({
        code: 4,
        stdout: 'in-exec\n',
      });
      expect(await b(['tasks', 'exec', '--exec-id', 'e2', ID, 'cat'], 'piped\n')).toMatchObject({
        code: 0,
        stdout: 'piped\n',
      });
      expect(
        await b([
          'tasks',
          'exec',
          '--exec-id',
          'e3',
          '--cwd',
          '/tmp',
          '--user',
          'nobody',
          ID,
          'sh',
          '-c',
          'pwd; id -u',
        ]),
      ).toMatchObject({ code: 0, stdout: '/tmp\n65534\n' });
    });

    it('execs with a terminal of our size, which the process has from its first instruction', async () => {
      const berthCmd = [process.execPath, join(repoRoot, 'bin', 'berth'), '-a', daemon.address, '-n', NS];
      const cmd = `stty rows 20 cols 70; ${berthCmd.join(' ')} tasks exec -t --exec-id tx --fifo-dir ${fifoDir} ${ID} sh -c 'stty size; tty; read v; echo v=$v; exit 3'`;
      const r = await run('script', ['-qec', cmd, '/dev/null'], { input: 'typed\r' });
      const out = r.stdout.replace(/\r/g, '');
      expect(r.code).toBe(3);
      expect(out).toMatch(/^20 70$/m);
      expect(out).toMatch(/\/dev\/pts\/\d+$/m);
      expect(out).toMatch(/^v=typed$/m);
      expect(out).not.toMatch(/resize pty/);
      // The exec's FIFOs went with it; the task's own stay for attach.
      expect(readdirSync(fifoDir).filter((d) => d.startsWith('tx-'))).toEqual([]);
    });

    it('shows the exec processes in ps, as ctr does', async () => {
      await ok([
        'tasks',
        'exec',
        '-d',
        '--exec-id',
        'sleeper',
        '--fifo-dir',
        join(work, 'exec-fifo'),
        ID,
        'sleep',
        '1000',
      ]);
      const ps = await ok(['tasks', 'ps', ID]);
      expect(ps).toMatch(
        /^PID +INFO\n\d+ +-\n\d+ +&ProcessDetails\{ExecID:sleeper,XXX_unrecognized:\[\],\}\n$/,
      );
      expect(ps).toBe((await c(['tasks', 'ps', ID])).stdout);
      await ok(['tasks', 'kill', '--exec-id', 'sleeper', '-s', 'KILL', ID]);
      const del = await b(['tasks', 'rm', '--exec-id', 'sleeper', ID]);
      expect(del.code).toBe(137);
      removeDir(join(work, 'exec-fifo'));
    });

    it('pauses and resumes', async () => {
      await ok(['tasks', 'pause', ID]);
      expect(await ok(['tasks', 'ls'])).toMatch(new RegExp(`^${ID} +\\d+ +PAUSED$`, 'm'));
      // While frozen the cgroup counters hold still: ctr's metrics, table and json, are ours.
      const strip = (s: string) => s.split('\n').slice(2).join('\n');
      expect(strip(await ok(['tasks', 'metrics', ID]))).toBe(
        strip((await c(['tasks', 'metrics', ID])).stdout),
      );
      expect(await ok(['--format', 'json', 'tasks', 'metrics', ID])).toBe(
        (await c(['tasks', 'metrics', '--format', 'json', ID])).stdout,
      );
      await ok(['tasks', 'resume', ID]);
      expect(await ok(['tasks', 'ls'])).toMatch(new RegExp(`^${ID} +\\d+ +RUNNING$`, 'm'));
    });

    it('attaches to the output the detached task kept', async () => {
      // Attach reads what waits in the FIFO; kill from the side so it returns.
      const attached = b(['tasks', 'attach', ID]);
      await new Promise((r) => setTimeout(r, 300));
      await ok(['tasks', 'kill', '-s', 'KILL', ID]);
      const r = await attached;
      expect(r.code).toBe(137);
      expect(r.stdout).toBe('started\n');
      // As ctr's attach: the task it waited for is deleted, and with it go its FIFOs.
      expect((await b(['tasks', 'ls', '-q'])).stdout).toBe('');
      expectNoFifos();
    });

    it('leaves the container, whose snapshot goes with it', async () => {
      expect(await containerIds()).toContain(ID);
      expect((await c(['containers', 'rm', ID])).code).toBe(0);
      expect(await snapshotKeys()).not.toContain(ID);
    });
  });

  describe('kill, delete and start', () => {
    it("kills with the image's stop signal, refuses to delete a running task, deletes a stopped one", async () => {
      const ID = 'kd1';
      await ok(runArgs('-d', BUSYBOX, ID, 'sh', '-c', 'trap "exit 42" TERM; while :; do sleep 0.1; done'));
      try {
        const busy = await b(['tasks', 'rm', ID]);
        expect(busy.code).toBe(1);
        expect(busy.stderr).toMatch(/task must be stopped before deletion: running/);
        await ok(['tasks', 'kill', ID]);
        await waitForStatus(ID, 'STOPPED');
        const del = await b(['tasks', 'rm', ID]);
        expect(del.code).toBe(0);
        expect(del.stderr).toMatch(/exit with non-zero exit code 42/);
        expectNoFifos();
      } finally {
        await b(['tasks', 'rm', '-f', ID]);
        await c(['containers', 'rm', ID]);
      }
    });

    it('starts a created container with tasks start and exits with its status', async () => {
      const ID = 'st1';
      expect(
        (await c(['containers', 'create', BUSYBOX, ID, '--', 'sh', '-c', 'echo from-start; exit 6'])).code,
      ).toBe(0);
      try {
        const r = await b(['tasks', 'start', '--fifo-dir', fifoDir, ID]);
        expect(r).toMatchObject({ code: 6, stdout: 'from-start\n' });
        expect((await b(['tasks', 'ls', '-q'])).stdout).toBe('');
        expectNoFifos();
      } finally {
        await c(['containers', 'rm', ID]);
      }
    });

    it('creates containers as run does (command flags, image users), and ctr starts them alike', async () => {
      expect(await ok(['containers', 'create', USERIMG, 'cr1', 'sh', '-c', 'id -un; exit 2'])).toBe('');
      expect(await ok(['containers', 'create', '--env', 'E=1', BUSYBOX, 'cr2', 'sh', '-c', 'echo $E'])).toBe(
        '',
      );
      try {
        expect(await b(['tasks', 'start', '--fifo-dir', fifoDir, 'cr1'])).toMatchObject({
          code: 2,
          stdout: 'nobody\n',
        });
        const byCtr = await c(['tasks', 'start', 'cr2']);
        expect(byCtr).toMatchObject({ code: 0, stdout: '1\n' });
        const failed = await b(['containers', 'create', '--user', 'ghost', BUSYBOX, 'cr3']);
        expect(failed.code).toBe(1);
        expect(failed.stderr).toMatch(/ghost.*not found/);
        expect(await snapshotKeys()).not.toContain('cr3');
      } finally {
        await c(['containers', 'rm', 'cr1', 'cr2']);
      }
    });
  });

  describe("through berth's own shim (--runtime io.containerd.berth.v1)", () => {
    afterEach(expectNoFifos);
    const RT = ['--runtime', 'io.containerd.berth.v1'];

    it('runs, prints and exits with the status', async () => {
      const r = await b(
        runArgs('--rm', ...RT, BUSYBOX, 'bs1', 'sh', '-c', 'echo via-shim; cat; exit 3'),
        'in\n',
      );
      expect(r).toMatchObject({ code: 3, stdout: 'via-shim\nin\n' });
    });

    it('gives a terminal of the right size', async () => {
      const cmd = `stty rows 40 cols 120; ${process.execPath} ${join(repoRoot, 'bin', 'berth')} -a ${daemon.address} -n ${NS} run --fifo-dir ${fifoDir} --rm -t ${RT.join(' ')} ${BUSYBOX} bs2 sh -c 'tty; stty size'`;
      const r = await run('script', ['-qec', cmd, '/dev/null']);
      const out = r.stdout.replace(/\r/g, '');
      expect(r.code).toBe(0);
      // script echoes the end of its (empty) input as ^@ before the first line.
      expect(out).toMatch(/\/dev\/pts\/\d+$/m);
      expect(out).toMatch(/^40 120$/m);
    });

    it('execs into a detached container, then kills and deletes it', async () => {
      await ok(runArgs('-d', ...RT, BUSYBOX, 'bs3', 'sleep', '1000'));
      try {
        expect(
          await b(['tasks', 'exec', '--exec-id', 'x', 'bs3', 'sh', '-c', 'echo hello; exit 2']),
        ).toMatchObject({
          code: 2,
          stdout: 'hello\n',
        });
        await ok(['tasks', 'kill', '-s', 'KILL', 'bs3']);
        await waitForStatus('bs3', 'STOPPED');
        const del = await b(['tasks', 'rm', 'bs3']);
        expect(del.code).toBe(0);
        expect(del.stderr).toMatch(/exit code 137/);
      } finally {
        await b(['tasks', 'rm', '-f', 'bs3']);
        await c(['containers', 'rm', 'bs3']);
      }
    });
  });
});
