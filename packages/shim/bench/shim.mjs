#!/usr/bin/env node
// containerd-shim-berth-v1 against containerd-shim-runc-v2, both under the same real
// containerd and the same ctr: shim memory per running container, and the latency of
// `ctr run --rm ROOTFS id /bin/true`. Needs root, runc, containerd and a built tree.
//
//   node packages/shim/bench/shim.mjs [--containers 20] [--runs 10]
//
// Memory: N sleeping containers per runtime; the RSS (and PSS, which splits shared pages
// fairly) of every shim process, summed and divided by N. runc.v2 starts one shim per
// container; berth's serves the namespace from one process.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const testkit = require(join(root, 'packages/testkit/dist/index.js'));

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const N = arg('containers', 20);
const RUNS = arg('runs', 10);

function makeRootfs(dir) {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp']) mkdirSync(join(rootfs, d));
  copyFileSync('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of execFileSync('/usr/bin/busybox', ['--list']).toString().split('\n')) {
    if (a && a !== 'busybox') symlinkSync('busybox', join(rootfs, 'bin', a));
  }
  return rootfs;
}

function ctr(address, args) {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/ctr', ['--address', address, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`ctr ${args.join(' ')}: ${code} ${err}`))));
  });
}

function procStatus(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { ppid: Number(/PPid:\s+(\d+)/.exec(s)[1]), rssKb: Number(/VmRSS:\s+(\d+)/.exec(s)[1]) };
}

function pssKb(pid) {
  const m = /Pss:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function memory(address, runtime, rootfs, prefix) {
  const ids = Array.from({ length: N }, (_, i) => `${prefix}${i}`);
  for (const id of ids) await ctr(address, ['run', '-d', '--runtime', runtime, '--rootfs', rootfs, id, '/bin/sleep', '100000']);
  const table = await ctr(address, ['tasks', 'ls']);
  const shims = new Set();
  for (const id of ids) {
    const pid = Number(new RegExp(`^${id}\\s+(\\d+)`, 'm').exec(table)[1]);
    shims.add(procStatus(pid).ppid);
  }
  let rss = 0;
  let pss = 0;
  for (const pid of shims) {
    rss += procStatus(pid).rssKb;
    pss += pssKb(pid);
  }
  for (const id of ids) {
    await ctr(address, ['tasks', 'kill', '-s', 'SIGKILL', id]);
  }
  for (const id of ids) {
    for (let i = 0; i < 100; i++) {
      try {
        await ctr(address, ['tasks', 'delete', id]);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await ctr(address, ['containers', 'rm', id]);
  }
  return { shims: shims.size, rssPerContainerMb: rss / 1024 / N, pssPerContainerMb: pss / 1024 / N };
}

async function latency(address, runtime, rootfs, prefix) {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    await ctr(address, ['run', '--rm', '--runtime', runtime, '--rootfs', rootfs, `${prefix}${i}`, '/bin/true']);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return median(times);
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'berth-shim-bench-'));
  const rootfs = makeRootfs(dir);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(join(root, 'bin', 'containerd-shim-berth-v1'), join(bin, 'containerd-shim-berth-v1'));
  const env = { PATH: `${bin}:${process.env.PATH}`, BERTH_SHIM_SOCKET_DIR: join(dir, 's'), BERTH_SHIM_RUNTIME_ROOT: join(dir, 'runc') };
  const results = [];
  try {
    for (const [label, extra] of [
      ['exits with its last container (default)', {}],
      ['lingers 5 s for the next one (BERTH_SHIM_IDLE_MS=5000)', { BERTH_SHIM_IDLE_MS: '5000' }],
    ]) {
      const daemon = await testkit.startContainerd({ env: { ...env, ...extra } });
      try {
        const berth = await latency(daemon.address, 'io.containerd.berth.v1', rootfs, 'lb');
        const runc = await latency(daemon.address, 'io.containerd.runc.v2', rootfs, 'lr');
        results.push([`ctr run --rm /bin/true, median of ${RUNS} (ms); berth shim ${label}`, berth, runc]);
        if (Object.keys(extra).length === 0) {
          const mb = await memory(daemon.address, 'io.containerd.berth.v1', rootfs, 'mb');
          const mr = await memory(daemon.address, 'io.containerd.runc.v2', rootfs, 'mr');
          results.push([`shim processes for ${N} containers`, mb.shims, mr.shims]);
          results.push([`shim RSS per container (MB), ${N} containers`, mb.rssPerContainerMb, mr.rssPerContainerMb]);
          results.push([`shim PSS per container (MB), ${N} containers`, mb.pssPerContainerMb, mr.pssPerContainerMb]);
        }
      } finally {
        await daemon.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('\nmetric | berth shim | containerd-shim-runc-v2 | ratio');
  for (const [name, b, r] of results) {
    const f = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
    console.log(`${name} | ${f(b)} | ${f(r)} | ${(b / r).toFixed(2)}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
