/**
 * bin/berthd as a process: flags, config errors, the ready line, the socket's life cycle
 * (stale socket removed, live daemon refused, socket gone after SIGTERM) and exit codes.
 * Runs the built package (dist/), as CI does after `pnpm build`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '@berth/daemon';
import {
  ctr,
  type Daemon,
  makeTempDir,
  removeDir,
  repoRoot,
  run,
  startBerthd,
  stopChild,
} from '@berth/testkit';

const BERTHD = join(repoRoot, 'bin', 'berthd');
const berthd = (args: string[], opts: { input?: string } = {}) =>
  run(process.execPath, [BERTHD, ...args], opts);

describe('berthd command line', () => {
  let dir: string;
  beforeEach(() => {
    dir = makeTempDir('berthd-cli-');
  });
  afterEach(() => removeDir(dir));

  test('--version and --help', async () => {
    const v = await berthd(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^berthd berth v\d+\.\d+\.\d+/);
    const h = await berthd(['--help']);
    expect(h.code).toBe(0);
    for (const flag of ['--config', '--log-level', '--address', '--root', '--state', 'config default']) {
      expect(h.stdout).toContain(flag);
    }
  });

  test('config default prints a config.toml that parses back, every plugin default included', async () => {
    const r = await berthd(['config', 'default']);
    expect(r.code).toBe(0);
    const { config, warnings } = parseConfig(r.stdout);
    expect(warnings).toEqual([]);
    expect(config.root).toBe('/var/lib/berth');
    // containerd's keys and defaults (`containerd config default`).
    expect(config.plugins['io.containerd.gc.v1.scheduler']).toEqual({
      pause_threshold: 0.02,
      deletion_threshold: 0,
      mutation_threshold: 100,
      schedule_delay: '0s',
      startup_delay: '100ms',
    });
    expect(config.plugins['io.containerd.metadata.v1.sqlite']).toEqual({ content_sharing_policy: 'shared' });
  });

  test('config dump shows the file and flags merged', async () => {
    const path = join(dir, 'c.toml');
    writeFileSync(
      path,
      'version = 2\nroot = "/from/file"\n[plugins."io.containerd.gc.v1.scheduler"]\nstartup_delay = "2s"\n',
    );
    const r = await berthd(['-c', path, '--state', '/from/flag', 'config', 'dump']);
    expect(r.code).toBe(0);
    const { config } = parseConfig(r.stdout);
    expect(config).toMatchObject({ root: '/from/file', state: '/from/flag' });
    expect(config.plugins['io.containerd.gc.v1.scheduler']).toMatchObject({
      startup_delay: '2s',
      mutation_threshold: 100,
    });
  });

  test.each([
    [['--bogus'], 'berthd: flag provided but not defined: -bogus'],
    [['nonsense'], 'berthd: unknown command "nonsense"'],
    [['-c', '/nonexistent/berth.toml'], 'berthd: failed to load config /nonexistent/berth.toml'],
    [['-l', 'chatty', 'config', 'dump', '-c', '/dev/null'], 'berthd: not a valid log level: "chatty"'],
  ])('%j exits 1 with a message', async (args, message) => {
    const r = await berthd(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  test('a bad value in config.toml exits 1 naming the key and value', async () => {
    const path = join(dir, 'bad.toml');
    writeFileSync(path, 'version = 2\n[grpc]\nuid = "root"\n');
    const r = await berthd([
      '-c',
      path,
      '--root',
      join(dir, 'r'),
      '--state',
      join(dir, 's'),
      '-a',
      join(dir, 'x.sock'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`berthd: invalid config ${path}: grpc.uid = "root": expected an integer`);
    expect(existsSync(join(dir, 'x.sock'))).toBe(false);
  });

  test('root and state must differ', async () => {
    writeFileSync(join(dir, 'c.toml'), 'version = 2\n');
    const same = join(dir, 'same');
    const r = await berthd([
      '-c',
      join(dir, 'c.toml'),
      '--root',
      same,
      '--state',
      same,
      '-a',
      join(dir, 's.sock'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('root and state must be different paths');
  });
});

describe('berthd process', () => {
  let daemon: Daemon | undefined;
  afterEach(async () => {
    await daemon?.dispose();
    daemon = undefined;
  });

  test('prints the ready line, serves ctr, exits 0 on SIGTERM and removes its socket', async () => {
    daemon = await startBerthd();
    await waitFor(() => daemon!.logs().includes(`berthd ready address=${daemon!.address}`));
    expect(statSync(daemon.address).mode & 0o777).toBe(0o660);
    const v = await ctr(daemon.address, ['version']);
    expect(v.stdout).toMatch(/Server:\s+Version:\s+v\d/);
    expect(await daemon.stop('SIGTERM')).toBe(0);
    expect(existsSync(daemon.address)).toBe(false);
    expect(daemon.logs()).toMatch(/level=info msg="berthd stopped"/);
  });

  test('SIGINT is a clean stop too', async () => {
    daemon = await startBerthd();
    expect(await daemon.stop('SIGINT')).toBe(0);
    expect(existsSync(daemon.address)).toBe(false);
  });

  test('an in-flight call finishes before shutdown completes', async () => {
    daemon = await startBerthd();
    // A Write stream held open by ctr: shutdown waits for it (up to its grace), then exits 0.
    const ingest = spawn('/usr/bin/ctr', ['--address', daemon.address, 'content', 'ingest', 'inflight'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    try {
      await waitFor(async () =>
        (await ctr(daemon!.address, ['content', 'active'])).stdout.includes('inflight'),
      );
      const stopped = daemon.stop('SIGTERM');
      ingest.stdin.end('last words');
      expect(await stopped).toBe(0);
      expect(
        await new Promise((r) => (ingest.exitCode !== null ? r(ingest.exitCode) : ingest.once('exit', r))),
      ).toBe(0);
    } finally {
      await stopChild(ingest, 'SIGKILL');
    }
  });

  test('a stale socket from a dead daemon is replaced; a live one is refused', async () => {
    const dir = makeTempDir('berthd-sock-');
    try {
      await staleSocketTest(dir);
    } finally {
      removeDir(dir);
    }
  });

  async function staleSocketTest(dir: string): Promise<void> {
    const sock = join(dir, 'berth.sock');
    // What a SIGKILLed daemon leaves: a socket file nobody listens on.
    const holder = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    await new Promise((r) => holder.stdout!.once('data', r));
    await stopChild(holder, 'SIGKILL');
    expect(statSync(sock).isSocket()).toBe(true);
    daemon = await startBerthd({ dir });
    expect(daemon.logs()).toContain('removing stale socket');

    const second = await berthd([
      '--root',
      join(dir, 'root2'),
      '--state',
      join(dir, 'state2'),
      '--address',
      daemon.address,
      '-c',
      join(dir, 'config.toml'),
    ]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`socket ${daemon.address}: another daemon is already serving on it`);
    expect((await ctr(daemon.address, ['version'])).code).toBe(0);
    await daemon.dispose();
    daemon = undefined;
  }

  test('a plugin failing to initialise is reported, not fatal; required_plugins makes it fatal', async () => {
    const dir = makeTempDir('berthd-plug-');
    try {
      await failingPluginTest(dir);
    } finally {
      removeDir(dir);
    }
  });

  async function failingPluginTest(dir: string): Promise<void> {
    mkdirSync(join(dir, 'root'), { recursive: true });
    daemon = await startBerthd({
      dir,
      config: 'version = 2\n[plugins."io.containerd.metadata.v1.sqlite"]\ncontent_sharing_policy = "bogus"\n',
    });
    const ls = await ctr(daemon.address, ['plugins', 'ls']);
    expect(ls.stdout).toMatch(/io\.containerd\.metadata\.v1\s+sqlite\s+-\s+error/);
    expect(ls.stdout).toMatch(/io\.containerd\.grpc\.v1\s+content\s+-\s+error/);
    expect(ls.stdout).toMatch(/io\.containerd\.grpc\.v1\s+version\s+-\s+ok/);
    const detailed = await ctr(daemon.address, ['plugins', 'ls', '-d', 'id==sqlite']);
    expect(detailed.stdout).toContain('unknown content sharing policy "bogus"');
    await daemon.stop();
    daemon = undefined;

    writeFileSync(
      join(dir, 'config.toml'),
      'version = 2\nrequired_plugins = ["io.containerd.metadata.v1.sqlite"]\n[plugins."io.containerd.metadata.v1.sqlite"]\ncontent_sharing_policy = "bogus"\n',
    );
    const r = await berthd([
      '--root',
      join(dir, 'root'),
      '--state',
      join(dir, 'state'),
      '-a',
      join(dir, 'berth.sock'),
      '-c',
      join(dir, 'config.toml'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'required plugins did not load: io.containerd.metadata.v1.sqlite: unknown content sharing policy',
    );
  }
});

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
