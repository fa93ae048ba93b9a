/**
 * The quota snapshotter loaded by bin/berthd from config.toml, as a package found from the
 * config's directory: Introspection lists it, containerd's own snapshotter suite passes over
 * gRPC, stock `ctr run --snapshotter quota` runs a container on it (and the container meets
 * the quota), and a package built for another interface version stops berthd at start.
 * Needs root, a build, runc and Debian's containerd-shim-runc-v2.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  buildImage,
  ctr,
  type Daemon,
  makeTempDir,
  repoRoot,
  startBerthd,
  writeOciLayout,
} from '@berth/testkit';
import { QUOTA_LABEL } from '../src';
import { mountsUnder } from './helpers';

const URI = 'io.containerd.snapshotter.v1.quota';
const kit = join(repoRoot, '..', 'shared', 'conformance', 'run.sh');
const canRun =
  process.getuid?.() === 0 &&
  existsSync('/usr/bin/containerd-shim-runc-v2') &&
  existsSync('/bin/busybox') &&
  existsSync(join(__dirname, '..', 'dist', 'index.js'));

/** A config.toml loading `module` as the quota snapshotter, with its own options. */
const configFor = (module: string, options = '') =>
  `version = 2\n[plugins."${URI}"]\n  module = "${module}"\n${options}`;

/** `<dir>/node_modules/<name>` pointing at target: an installed package beside config.toml. */
function install(dir: string, name: string, target: string): void {
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  symlinkSync(target, join(dir, 'node_modules', name));
}

function cleanup(dir: string): void {
  for (const m of mountsUnder(dir)) spawn('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}

(canRun ? describe : describe.skip)('berthd with the quota snapshotter from config.toml', () => {
  let dir: string;
  let daemon: Daemon;
  const layers = () => join(dir, 'layers-on-another-disk');
  const c = (...args: string[]) =>
    ctr(daemon.address, ['-n', `quota-e2e-${process.pid}`, ...args], { timeoutMs: 120_000 });

  beforeAll(async () => {
    dir = makeTempDir('berthd-quota-');
    install(dir, 'berth-snapshotter-quota', resolve(__dirname, '..'));
    daemon = await startBerthd({
      dir,
      config: configFor('berth-snapshotter-quota', `  size = ${16 << 20}\n  root_path = "${layers()}"\n`),
    });
  });
  afterAll(async () => {
    await daemon?.stop();
    cleanup(dir);
  });

  test('ctr plugins ls lists it loaded, with the module it came from', async () => {
    const table = await c('plugins', 'ls');
    expect(table.stdout).toMatch(/^io\.containerd\.snapshotter\.v1\s+quota\s+linux\/\S+\s+ok\s*$/m);
    const r = await c('plugins', 'ls', '-d', 'id==quota');
    expect(r.stdout).toMatch(/^Type:\s+io\.containerd\.snapshotter\.v1\nID:\s+quota\n/);
    expect(r.stdout).toMatch(
      new RegExp(`^\\s+module\\s+${resolve(__dirname, '..', 'dist', 'index.js')}$`, 'm'),
    );
    expect(r.stdout).toMatch(/^\s+implements\s+io\.containerd\.snapshotter\.v1$/m);
    expect(r.stdout).toMatch(new RegExp(`^\\s+root\\s+${layers()}$`, 'm'));
  });

  test('ctr run --snapshotter quota runs a container, which gets ENOSPC past its quota', async () => {
    const image = 'docker.io/library/busybox:quota-e2e';
    const archive = join(dir, 'busybox.tar');
    writeOciLayout(archive, buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'] } }), image);
    expect(await c('images', 'import', '--snapshotter', 'quota', archive)).toMatchObject({ code: 0 });
    expect(await c('run', '--snapshotter', 'quota', '--rm', image, 'q1', 'id', '-u')).toMatchObject({
      code: 0,
      stdout: '0\n',
    });
    const r = await c(
      'run',
      '--snapshotter',
      'quota',
      '--rm',
      image,
      'q2',
      'sh',
      '-c',
      'dd if=/dev/zero of=/big bs=1M count=32 2>&1; echo exit=$?',
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('No space left on device');
    expect(r.stdout).toMatch(/exit=1\n$/);
    // 8 MiB fit in the configured 16 MiB, not in the 2 MiB one container's label asks for.
    const dd8 = ['sh', '-c', 'dd if=/dev/zero of=/big bs=1M count=8 2>&1; echo exit=$?'];
    expect((await c('run', '--snapshotter', 'quota', '--rm', image, 'q3', ...dd8)).stdout).toMatch(
      /exit=0\n$/,
    );
    const label = `${QUOTA_LABEL}=${2 << 20}`;
    const small = await c(
      'run',
      '--snapshotter',
      'quota',
      '--snapshotter-label',
      label,
      '--rm',
      image,
      'q4',
      ...dd8,
    );
    expect(small.stdout).toContain('No space left on device');
    expect(small.stdout).toMatch(/exit=1\n$/);
    // The image's layer went to root_path; once --rm removed the containers, the garbage
    // collector removes their snapshots from the quota snapshotter, and with them the mounts.
    expect(existsSync(join(layers(), 'layers'))).toBe(true);
    for (let i = 0; i < 100 && mountsUnder(layers()).length > 0; i++)
      await new Promise((r) => setTimeout(r, 200));
    expect(mountsUnder(layers())).toEqual([]);
  }, 180_000);

  (existsSync(kit) ? test : test.skip)(
    "containerd's snapshotter suite passes over gRPC",
    async () => {
      const output = await new Promise<string>((res, rej) => {
        const child = spawn('bash', [kit, daemon.address, 'snapshotter', 'quota'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
        });
        child.stderr.on('data', (b: Buffer) => {
          out += b.toString();
        });
        child.once('error', rej);
        child.once('exit', (code) =>
          code === 0 ? res(out) : rej(new Error(`run.sh exited ${code}:\n${out}`)),
        );
      });
      const failed = [...output.matchAll(/^--- FAIL: (\S+)/gm)].map((m) => m[1]);
      const passed = [...output.matchAll(/^\s*--- PASS: (TestSnapshotter\/\S+)/gm)].map((m) => m[1]);
      expect({ failed, output: failed.length ? output : '' }).toEqual({ failed: [], output: '' });
      expect(passed).toHaveLength(20);
    },
    900_000,
  );
});

(canRun ? describe : describe.skip)(
  'berthd refuses a snapshotter built for another interface version',
  () => {
    let dir: string;
    afterEach(() => cleanup(dir));

    test('it does not start, and says which plugin implements what against what it offers', async () => {
      dir = makeTempDir('berthd-quota-v2-');
      const pkg = join(dir, 'node_modules', 'snapshotter-from-the-future');
      mkdirSync(pkg, { recursive: true });
      writeFileSync(
        join(pkg, 'package.json'),
        JSON.stringify({ name: 'snapshotter-from-the-future', main: 'index.js' }),
      );
      writeFileSync(
        join(pkg, 'index.js'),
        "exports.plugin = { implements: 'io.containerd.snapshotter.v2', init() { throw new Error('never called'); } };\n",
      );
      const started = startBerthd({ dir, config: configFor('snapshotter-from-the-future') });
      await expect(started).rejects.toThrow(
        'berthd: failed to start: plugin "io.containerd.snapshotter.v1.quota" implements io.containerd.snapshotter.v2, berthd offers io.containerd.snapshotter.v1',
      );
    });
  },
);
