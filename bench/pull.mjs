// Cold pull+unpack of a ~100 MB, 6-layer image from a registry on loopback: berthd through
// berth's CLI (server side, Transfer service), berthd through the stock ctr (client side:
// Content, Leases, Diff, Snapshots, Images), and containerd through the same ctr.
// Every run gets a fresh daemon root after a sync; best and median of N runs.
// Usage: pnpm bench pull [--runs 3]
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { exec, median, testkit, timed } from './_common.mjs';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
const { file, buildImage, writeTar } = testkit;

/** Text that gzip compresses about 4:1, as source trees and binaries' data tend to. */
function textish(size) {
  const words = Array.from({ length: 2000 }, () => randomBytes(1 + (randomBytes(1)[0] % 9)).toString('hex'));
  const parts = [];
  let n = 0;
  while (n < size) {
    const w = `${words[(Math.random() * words.length) | 0]}${Math.random() < 0.1 ? '\n' : ' '}`;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

function manyFiles(prefix, count, size) {
  return Array.from({ length: count }, (_, i) => file(`${prefix}/${(i % 50).toString(16)}/f${i}.txt`, textish(size)));
}

// Six layers: a base of many small files, libraries, a big incompressible blob (a model, a
// packed binary), a medium application layer, configuration, and a thin top layer.
console.log('building the image (6 layers, ~100 MB compressed)...');
const MB = 1 << 20;
const layers = [
  manyFiles('usr/share/base', 4000, 4096),
  [file('usr/lib/libbig.so', textish(40 * MB)), ...manyFiles('usr/lib/small', 500, 16384)],
  { tar: writeTar([{ name: 'opt/data/blob.bin', type: 'file', data: randomBytes(60 * MB) }]) },
  [file('app/bundle.js', textish(12 * MB)), file('app/assets.bin', randomBytes(8 * MB))],
  manyFiles('etc/conf', 300, 2048),
  [file('app/VERSION', '1.0.0\n')],
];
const image = buildImage({ layers, config: { Cmd: ['/app/run'] } });
const total = image.layers.reduce((n, l) => n + l.desc.size, 0);
console.log(
  `image: ${(total / MB).toFixed(1)} MB compressed in ${image.layers.length} layers ` +
    `(${image.layers.map((l) => (l.desc.size / MB).toFixed(1)).join(', ')} MB)`,
);

const registry = await testkit.startRegistry();
const berthBin = join(testkit.repoRoot, 'bin', 'berth');
const results = { 'berthd via berth': [], 'berthd via ctr': [], 'containerd via ctr': [] };
try {
  await testkit.pushToRegistry(registry.url, 'bench/app', 'v1', image);
  const ref = `${registry.host}/bench/app:v1`;
  const cases = [
    ['berthd via berth', () => testkit.startBerthd(), (d) => [process.execPath, [berthBin, '-a', d.address, 'images', 'pull', ref]]],
    ['berthd via ctr', () => testkit.startBerthd(), (d) => ['/usr/bin/ctr', ['-a', d.address, 'images', 'pull', '--plain-http', ref]]],
  ];
  if (testkit.containerdInstalled()) {
    cases.push([
      'containerd via ctr',
      () => testkit.startContainerd(),
      (d) => ['/usr/bin/ctr', ['-a', d.address, 'images', 'pull', '--plain-http', ref]],
    ]);
  } else console.error('containerd is not installed: measuring berthd alone');
  for (let run = 1; run <= RUNS; run++) {
    // Alternate the order so no daemon always runs first (page cache, CPU frequency).
    const order = run % 2 ? cases : [...cases].reverse();
    for (const [name, start, command] of order) {
      // Each pull writes and fsyncs ~300 MB and the previous run's root was just removed:
      // flush that first, so no run pays for the writeback of the one before it.
      await exec('/bin/sync', []);
      const d = await start();
      try {
        const [cmd, args] = command(d);
        const secs = await timed(() => exec(cmd, args));
        results[name].push(secs);
        console.log(`run ${run}: ${name.padEnd(18)} ${secs.toFixed(2)} s`);
      } finally {
        await d.dispose();
      }
    }
  }
} finally {
  await registry.stop();
}

const measured = Object.entries(results).filter(([, v]) => v.length > 0);
const best = Object.fromEntries(measured.map(([k, v]) => [k, Math.min(...v)]));
const mid = Object.fromEntries(measured.map(([k, v]) => [k, median(v)]));
const base = best['containerd via ctr'];
const baseMid = mid['containerd via ctr'];
console.log(`\npull+unpack, ${(total / MB).toFixed(0)} MB in 6 layers from a loopback registry (${RUNS} runs, fresh roots)`);
const rows = [['client/daemon', 'best', 'ratio', 'median', 'ratio (/ containerd via ctr)']];
for (const [k] of measured) {
  rows.push([
    k,
    `${best[k].toFixed(2)} s`,
    base ? (best[k] / base).toFixed(2) : '-',
    `${mid[k].toFixed(2)} s`,
    baseMid ? (mid[k] / baseMid).toFixed(2) : '-',
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));
if (base) console.log('goal: berthd at most 0.80 of containerd');
