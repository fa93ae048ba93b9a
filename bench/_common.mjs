// Shared by the benchmarks: daemons on temporary roots, timing, and the ratio table.
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
export const testkit = require('../packages/testkit/dist/index.js');

/** Starts berthd and, when installed, containerd; each on its own temporary root. */
export async function startBoth() {
  const daemons = { berthd: await testkit.startBerthd() };
  if (testkit.containerdInstalled()) daemons.containerd = await testkit.startContainerd();
  else console.error('containerd is not installed: measuring berthd alone');
  return daemons;
}

export async function stopAll(daemons) {
  await Promise.all(Object.values(daemons).map((d) => d.dispose()));
}

/** Runs a command with stdin/stdout file descriptors or 'ignore'; rejects on a non-zero exit. */
export function exec(cmd, args, { stdin = 'ignore', stdout = 'ignore' } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin, stdout, 'pipe'] });
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}\n${err}`))));
  });
}

/** The median of a list of numbers (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export async function timed(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Prints rows of { metric, berthd, containerd, unit } with ratio berthd/containerd. */
export function report(title, rows, { lowerIsBetter = true } = {}) {
  console.log(`\n${title}`);
  const lines = [['metric', 'berthd', 'containerd', 'ratio (berthd/containerd)']];
  for (const r of rows) {
    const ratio = r.containerd ? r.berthd / r.containerd : undefined;
    lines.push([r.metric, `${r.berthd.toFixed(2)} ${r.unit}`, r.containerd ? `${r.containerd.toFixed(2)} ${r.unit}` : '-', ratio ? ratio.toFixed(2) : '-']);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  for (const l of lines) console.log(l.map((c, i) => c.padEnd(widths[i])).join('  '));
  if (!lowerIsBetter) console.log('(higher is better)');
}

/** Pids whose command line names the daemon's socket: its shims (the daemon's own line names it too). */
export function processesOf(address) {
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('-address');
      if (i >= 0 && argv[i + 1] === address) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** RSS and PSS of a process, in KiB (0 when it is gone). */
export function memoryOf(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const field = (n) => Number(new RegExp(`^${n}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { rss: field('Rss'), pss: field('Pss') };
  } catch {
    return { rss: 0, pss: 0 };
  }
}
