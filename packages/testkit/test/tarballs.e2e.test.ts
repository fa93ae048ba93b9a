/**
 * Every published package as a user gets it: `pnpm pack` of each (found by
 * scripts/packages.mjs, not listed here; the examples/ packages too, installed beside them as a
 * third party's package would be), then plain `npm install <tarballs>` into an empty
 * directory outside the workspace (no workspace, no links; third-party dependencies from
 * the registry, better-sqlite3 and @berth/sys compiled there). The cases run the READMEs'
 * own example blocks, marked `<!-- tarball-test: NAME -->`, in that directory, so a README
 * example that stops working fails here.
 */
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildImage,
  busyboxInstalled,
  type Registry,
  registryInstalled,
  startRegistry,
  writeOciLayout,
} from '../src';

const repo = join(__dirname, '..', '..', '..');
const isRoot = process.getuid?.() === 0;
const runc = ['/usr/sbin/runc', '/usr/bin/runc'].some((p) => existsSync(p));
const npmEnv = {
  ...process.env,
  // better-sqlite3 and @berth/sys compile against the installed Node headers: nothing downloaded
  npm_config_nodedir: '/usr',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};

/** The code block right under `<!-- tarball-test: NAME -->` in a package's README (pkg: its folder in the repository). */
function readmeExample(pkg: string, name: string): { lang: string; code: string } {
  const readme = readFileSync(join(repo, pkg, 'README.md'), 'utf8');
  const marker = `<!-- tarball-test: ${name} -->`;
  const at = readme.indexOf(marker);
  if (at < 0) throw new Error(`${pkg}/README.md has no ${marker}`);
  const m = /^\s*```(\w+)\n([\s\S]*?)\n```/.exec(readme.slice(at + marker.length));
  if (!m) throw new Error(`${pkg}/README.md: no code block right under ${marker}`);
  return { lang: m[1] as string, code: `${m[2]}\n` };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = npmEnv, timeout = 600_000) {
  const r: SpawnSyncReturns<string> = spawnSync(cmd, args, {
    cwd,
    env,
    encoding: 'utf8',
    timeout,
    maxBuffer: 64 << 20,
  });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}:\n${out}`);
  return r.stdout;
}

/** An empty project directory with the given tarballs installed by npm, as a user would. */
function npmInstall(dir: string, tarballs: string[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'tarball-user', private: true })}\n`);
  run('npm', ['install', '--no-package-lock', ...tarballs], dir);
}

/** Runs a README example in dir: a js block with node, a sh block with bash -eu. */
function runExample(dir: string, pkg: string, name: string, env: NodeJS.ProcessEnv = process.env): string {
  const { lang, code } = readmeExample(pkg, name);
  const file = join(dir, `${name}.${lang === 'sh' ? 'sh' : 'js'}`);
  writeFileSync(file, code);
  return lang === 'sh'
    ? run('bash', ['-eu', file], dir, env, 300_000)
    : run(process.execPath, [file], dir, env, 300_000);
}

const conformance = join(repo, '..', 'shared', 'conformance', 'run.sh');
// only the system's PATH: berthd must find its shim through @berth/shim, not the checkout's bin/
const env = { ...process.env, PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

/** busybox.tar in dir: an OCI layout of a busybox image named berth.local/demo/busybox:latest. */
function writeBusybox(dir: string): void {
  const image = buildImage({
    layers: ['busybox'],
    config: {
      Cmd: ['/bin/sh'],
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    },
  });
  writeOciLayout(join(dir, 'busybox.tar'), image, 'berth.local/demo/busybox:latest');
}

/** Mount points at or under dir, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/**
 * SIGTERM to a process this test did not spawn itself (a README block started it in the
 * background), then waits up to 30 s for it to be gone or a zombie. True when it went.
 */
function stopProcess(pid: number): boolean {
  const alive = () => {
    try {
      return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  if (!alive()) return true;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 300 && alive(); i++) spawnSync('sleep', ['0.1']);
  return !alive();
}

const ready = isRoot && runc && busyboxInstalled() && registryInstalled();
const maybe = ready ? describe : describe.skip;
if (!ready) it.skip('needs root, runc, busybox-static and docker-registry', () => {});

maybe('published packages, installed from their tarballs with plain npm', () => {
  let work: string;
  let all: string;
  let packed: { name: string; version: string; tarball: string }[];
  const tarball = (name: string): string => {
    const p = packed.find((x) => x.name === name);
    if (!p) throw new Error(`${name} was not packed`);
    return p.tarball;
  };

  beforeAll(() => {
    // outside the workspace: nothing of it (node_modules, .npmrc, pnpm-workspace.yaml) is found from here
    work = mkdtempSync(join(tmpdir(), 'berth-tarballs-'));
    packed = JSON.parse(
      run(
        process.execPath,
        [join(repo, 'scripts', 'packages.mjs'), 'pack', join(work, 'tarballs'), '--examples'],
        repo,
      ),
    );
    all = join(work, 'all');
    npmInstall(
      all,
      packed.map((p) => p.tarball),
    );
  }, 900_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs every package of the workspace and its examples but the private ones, each clean under publint and attw', () => {
    const names = packed.map((p) => p.name);
    expect(names).toEqual(
      expect.arrayContaining([
        '@berth/content',
        '@berth/daemon',
        '@berth/cli',
        '@berth/shim',
        '@berth/cri',
        '@berth/cni',
        'berth-snapshotter-quota',
      ]),
    );
    expect(names).not.toContain('@berth/testkit');
    const findings = JSON.parse(
      run(
        process.execPath,
        [join(repo, 'scripts', 'packages.mjs'), 'lint', ...packed.map((p) => p.tarball)],
        repo,
      ),
    ) as Record<string, string[]>;
    expect(Object.entries(findings).filter(([, problems]) => problems.length > 0)).toEqual([]);
    // sibling ranges are real versions in the packed manifest, not workspace: protocol
    const daemon = JSON.parse(
      readFileSync(join(all, 'node_modules', '@berth', 'daemon', 'package.json'), 'utf8'),
    );
    expect(daemon.dependencies['@berth/shim']).toBe(
      `^${packed.find((p) => p.name === '@berth/shim')?.version}`,
    );
    expect(JSON.stringify(daemon)).not.toContain('workspace:');
    // the example depends on the published @berth/api and nothing else of berth's
    const quota = JSON.parse(
      readFileSync(join(all, 'node_modules', 'berth-snapshotter-quota', 'package.json'), 'utf8'),
    );
    expect(quota.dependencies).toEqual({
      '@berth/api': `^${packed.find((p) => p.name === '@berth/api')?.version}`,
    });
  });

  it("runs the content store README example with only @berth/content's tarball and what it depends on", () => {
    const alone = join(work, 'content-alone');
    npmInstall(alone, [tarball('@berth/content'), tarball('@berth/api')]);
    expect(existsSync(join(alone, 'node_modules', '@berth', 'daemon'))).toBe(false);
    const out = runExample(alone, 'packages/content', 'content-store');
    const digest = `sha256:${createHash('sha256').update('hello, berth\n').digest('hex')}`;
    expect(out).toContain('hello, berth\n');
    expect(out).toContain(`${digest} 13 { 'example.org/kind': 'greeting' }`);
  }, 300_000);

  it('runs the snapshotter README example: prepare, commit, mount on overlayfs', () => {
    const out = runExample(all, 'packages/snapshotter', 'snapshotter');
    expect(out).toContain('from the base layer\nfrom the top layer\n');
    expect(out).toMatch(/^overlay .*lowerdir=/m);
  });

  it('runs a container with the installed berthd and npx berth run --rm, printing 42 (daemon README)', () => {
    writeBusybox(all);
    let out: string;
    try {
      out = runExample(all, 'packages/daemon', 'berthd-run', env);
    } catch (err) {
      const log = join(all, 'berthd.log');
      throw new Error(
        `${(err as Error).message}\nberthd.log:\n${existsSync(log) ? readFileSync(log, 'utf8') : '(none)'}`,
      );
    }
    expect(out.trim().split('\n').at(-1)).toBe('42');
    // found through the @berth/shim dependency: neither PATH nor a checkout has it
    expect(readFileSync(join(all, 'berthd.log'), 'utf8')).toContain(
      `shim=${join(all, 'node_modules', '@berth', 'shim', 'bin', 'containerd-shim-berth-v1')} `,
    );
  }, 300_000);

  describe('the example snapshotter berth-snapshotter-quota, installed beside @berth/daemon', () => {
    const state = () => join(all, 'berth-quota');
    let pid: number | undefined;
    afterAll(() => {
      if (pid !== undefined) stopProcess(pid);
      for (const m of mountsUnder(state())) spawnSync('umount', ['-l', m]);
    });

    it("loads from config.toml, runs containers with stock ctr under its quota (its README), passes containerd's snapshotter suite over gRPC", () => {
      writeBusybox(all);
      let out: string;
      try {
        out = runExample(all, 'examples/snapshotter-quota', 'quota-berthd', env);
      } catch (err) {
        const log = join(all, 'berthd-quota.log');
        throw new Error(
          `${(err as Error).message}\nberthd-quota.log:\n${existsSync(log) ? readFileSync(log, 'utf8') : '(none)'}`,
        );
      } finally {
        const file = join(all, 'berthd-quota.pid');
        if (existsSync(file)) pid = Number(readFileSync(file, 'utf8'));
      }
      expect(out).toMatch(/^io\.containerd\.snapshotter\.v1\s+quota\s+linux\/\S+\s+ok\s*$/m);
      expect(out).toMatch(/^42$/m);
      expect(out).toContain('No space left on device');
      expect(out).toMatch(/^dd exited 1$/m);
      const sock = join(state(), 'berth.sock');
      // the module berthd loaded is the one npm installed from the tarball, beside config.toml
      const detail = run('ctr', ['--address', sock, 'plugins', 'ls', '-d', 'id==quota'], all, env);
      expect(detail).toMatch(
        new RegExp(
          `^\\s+module\\s+${join(all, 'node_modules', 'berth-snapshotter-quota', 'dist', 'index.js')}$`,
          'm',
        ),
      );

      if (!existsSync(conformance)) {
        console.warn(`${conformance} is absent: containerd's snapshotter suite not run`);
      } else {
        const r = spawnSync('bash', [conformance, sock, 'snapshotter', 'quota'], {
          encoding: 'utf8',
          timeout: 900_000,
          maxBuffer: 64 << 20,
        });
        const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
        const failed = [...output.matchAll(/^--- FAIL: (\S+)/gm)].map((m) => m[1]);
        const passed = [...output.matchAll(/^\s*--- PASS: (TestSnapshotter\/\S+)/gm)].map((m) => m[1]);
        expect({ status: r.status, failed, output: r.status !== 0 || failed.length ? output : '' }).toEqual({
          status: 0,
          failed: [],
          output: '',
        });
        expect(passed).toHaveLength(20);
      }

      // berthd stops on SIGTERM by its pid, and takes its socket with it
      expect(pid).toBeGreaterThan(0);
      expect(stopProcess(pid as number)).toBe(true);
      pid = undefined;
      expect(existsSync(sock)).toBe(false);
    }, 1_200_000);
  });

  describe('with a docker-registry on loopback', () => {
    let registry: Registry;
    beforeAll(async () => {
      registry = await startRegistry();
    });
    afterAll(async () => {
      await registry?.stop();
    });

    it('pushes and pulls an image into a content store and a snapshotter, no daemon (images README)', () => {
      const out = runExample(all, 'packages/images', 'images-pull', {
        ...process.env,
        REGISTRY: registry.host,
      });
      expect(out).toContain(`${registry.host}/example/hello:v1 sha256:`);
      expect(out).toContain('hello from a layer\n');
    }, 300_000);
  });
});
