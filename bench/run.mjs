// Container start latency and memory per running container, berthd against containerd,
// both driven by the same stock ctr: `ctr run --rm IMAGE id /bin/true` one after another
// (median and best of N, after one warm-up run, the configurations taking turns run by
// run) and 20 at once (median of three turns); then 100 sleeping
// containers (`ctr run -d ... sleep 1000`), counting the RSS of the daemon plus every shim
// serving it (found by the daemon address on their command line) divided by 100.
// berthd runs its own shim (io.containerd.berth.v1) and containerd-shim-runc-v2;
// containerd runs containerd-shim-runc-v2.
// Usage: pnpm bench run [--runs 20] [--parallel 20] [--sleepers 100]
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { exec, median, memoryOf, processesOf, report, startBoth, stopAll, testkit, timed } from './_common.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const RUNS = arg('runs', 20);
const PARALLEL = arg('parallel', 20);
const SLEEPERS = arg('sleepers', 100);

const BERTH = 'io.containerd.berth.v1';
const RUNC = 'io.containerd.runc.v2';
const IMAGE = 'docker.io/library/busybox:berth-bench';
const NS = 'bench-run';

const dir = testkit.makeTempDir('berth-bench-run-');
const archive = join(dir, 'busybox.tar');
testkit.writeOciLayout(
  archive,
  testkit.buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } }),
  IMAGE,
);

const ctr = (d, args) => ['--address', d.address, '--namespace', NS, ...args];

/** One `ctr run`; rejects when ctr fails. */
const ctrRun = (d, args) => exec('/usr/bin/ctr', ctr(d, ['run', ...args]));

let serial = 0;
const nextId = (tag) => `r${tag}-${++serial}`;

/** Median and best of a list of times in seconds, in ms. */
const summary = (times) => ({ median: median(times) * 1000, best: Math.min(...times) * 1000 });

/**
 * RUNS sequential `ctr run --rm` per configuration, after one warm-up each, taken in turns
 * (one run of each configuration per round), so a machine that speeds up or slows down
 * meanwhile weighs on every configuration alike. Then PARALLEL at once, in turns too, the
 * median of three rounds. Returns { seq: {median, best}, par } per configuration.
 */
async function latency(configs) {
  const times = configs.map(() => []);
  const par = configs.map(() => []);
  for (const cfg of configs) {
    await ctrRun(cfg.d, ['--rm', '--runtime', cfg.runtime, IMAGE, nextId(cfg.tag), '/bin/true']);
  }
  for (let i = 0; i < RUNS; i++) {
    for (const [k, cfg] of configs.entries()) {
      times[k].push(
        await timed(() => ctrRun(cfg.d, ['--rm', '--runtime', cfg.runtime, IMAGE, nextId(cfg.tag), '/bin/true'])),
      );
    }
  }
  for (let round = 0; round < 3; round++) {
    for (const [k, cfg] of configs.entries()) par[k].push(await parallel(cfg.d, cfg.runtime, cfg.tag));
  }
  return configs.map((_, k) => ({ seq: summary(times[k]), par: median(par[k]) * 1000 }));
}

/** Wall time of PARALLEL `ctr run --rm` at once, in seconds. */
async function parallel(d, runtime, tag) {
  const ids = Array.from({ length: PARALLEL }, () => nextId(tag));
  return timed(() => Promise.all(ids.map((id) => ctrRun(d, ['--rm', '--runtime', runtime, IMAGE, id, '/bin/true']))));
}

/** Starts SLEEPERS sleeping containers, measures daemon + shims per container in MiB, removes them. */
async function memory(d, runtime, tag) {
  const ids = Array.from({ length: SLEEPERS }, () => nextId(tag));
  const batch = 10;
  try {
    for (let i = 0; i < ids.length; i += batch) {
      await Promise.all(
        ids.slice(i, i + batch).map((id) => ctrRun(d, ['-d', '--runtime', runtime, IMAGE, id, 'sleep', '1000'])),
      );
    }
    await new Promise((r) => setTimeout(r, 2000)); // let the shims settle after the burst
    const shims = processesOf(d.address);
    let rss = 0;
    let pss = 0;
    for (const pid of [d.pid, ...shims]) {
      const m = memoryOf(pid);
      rss += m.rss;
      pss += m.pss;
    }
    return { rss: rss / 1024 / SLEEPERS, pss: pss / 1024 / SLEEPERS, shims: shims.length };
  } finally {
    await removeAll(d, ids);
  }
}

/** Kills and deletes the tasks and containers of `ids` (whatever of them exists). */
async function removeAll(d, ids) {
  const quiet = (args) => exec('/usr/bin/ctr', ctr(d, args)).catch(() => {});
  const batch = 10;
  for (let i = 0; i < ids.length; i += batch) {
    const part = ids.slice(i, i + batch);
    await Promise.all(part.map((id) => quiet(['tasks', 'kill', '-s', 'SIGKILL', id])));
    await Promise.all(
      part.map(async (id) => {
        for (let t = 0; t < 50; t++) {
          try {
            await exec('/usr/bin/ctr', ctr(d, ['tasks', 'delete', id]));
            break;
          } catch (err) {
            if (/not found/.test(err.message)) break;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }),
    );
    await Promise.all(part.map((id) => quiet(['containers', 'delete', id])));
  }
}

const daemons = await startBoth();
const results = {};
try {
  const configs = [];
  for (const [name, d] of Object.entries(daemons)) {
    await exec('/usr/bin/ctr', ctr(d, ['images', 'import', archive]));
    for (const runtime of name === 'berthd' ? [BERTH, RUNC] : [RUNC]) {
      configs.push({ name, d, runtime, tag: `${name[0]}${runtime === BERTH ? 'b' : 'r'}` });
    }
  }
  const measured = await latency(configs);
  for (const [k, cfg] of configs.entries()) {
    const { seq, par } = measured[k];
    results[`${cfg.name} ${cfg.runtime}`] = { seq, par };
    console.log(
      `${cfg.name} ${cfg.runtime}: run --rm median ${seq.median.toFixed(0)} ms, best ${seq.best.toFixed(0)} ms; ${PARALLEL} in parallel ${par.toFixed(0)} ms (median of 3)`,
    );
  }
  for (const [name, d] of Object.entries(daemons)) {
    const runtime = name === 'berthd' ? BERTH : RUNC;
    const mem = await memory(d, runtime, `${name[0]}m`);
    results[`${name} ${runtime}`].mem = mem;
    console.log(
      `${name} ${runtime}: ${SLEEPERS} sleeping containers, ${mem.shims} shim processes, per container RSS ${mem.rss.toFixed(2)} MiB, PSS ${mem.pss.toFixed(2)} MiB`,
    );
  }
} finally {
  await stopAll(daemons);
  rmSync(dir, { recursive: true, force: true });
}

const c = results[`containerd ${RUNC}`];
const rows = [];
for (const runtime of [BERTH, RUNC]) {
  const b = results[`berthd ${runtime}`];
  const shim = runtime === BERTH ? 'berth shim' : 'runc.v2 shim';
  rows.push(
    { metric: `run --rm /bin/true, median (${shim})`, berthd: b.seq.median, containerd: c?.seq.median, unit: 'ms' },
    { metric: `run --rm /bin/true, best (${shim})`, berthd: b.seq.best, containerd: c?.seq.best, unit: 'ms' },
    { metric: `${PARALLEL} x run --rm in parallel (${shim})`, berthd: b.par, containerd: c?.par, unit: 'ms' },
  );
}
const bm = results[`berthd ${BERTH}`].mem;
rows.push(
  { metric: `RSS per container, ${SLEEPERS} sleeping (berth shim)`, berthd: bm.rss, containerd: c?.mem.rss, unit: 'MiB' },
  { metric: `PSS per container, ${SLEEPERS} sleeping (berth shim)`, berthd: bm.pss, containerd: c?.mem.pss, unit: 'MiB' },
);
report(
  `run: ctr run --rm IMAGE id /bin/true (${RUNS} sequential after a warm-up, configurations in turns; ${PARALLEL} in parallel, median of 3) and daemon + shims memory with ${SLEEPERS} sleeping containers; containerd uses runc.v2`,
  rows,
);
