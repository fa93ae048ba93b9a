// Layer unpack through the Diff service, berthd against containerd: the same ~100 MB gzip
// layer (many small files plus a few large ones) is ingested into each daemon, then applied
// onto a fresh overlayfs snapshot with Diff.Apply, by the same grpc-js client for both.
// Usage: pnpm bench unpack [--small 40000] [--large-mib 10] [--large 4] [--runs 5]
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import { exec, report, startBoth, stopAll, timed } from './_common.mjs';

const require = createRequire(import.meta.url);
const api = require('../packages/api/dist/index.js');
const { connect } = require('../packages/client/dist/index.js');
const { buildTar, MediaTypes } = require('../packages/images/dist/index.js');
// The grpc-js the packages use (the root has no dependencies of its own).
const grpc = createRequire(new URL('../packages/api/package.json', import.meta.url))('@grpc/grpc-js');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const small = arg('small', 40000);
const largeMiB = arg('large-mib', 10);
const large = arg('large', 4);
const runs = arg('runs', 5);
const NS = 'bench-unpack';

// The layer: small files in directories of 100, from a random pool (so gzip gains little), plus large random files.
const entries = [];
const pool = randomBytes(1 << 20);
for (let i = 0; i < small; i++) {
  if (i % 100 === 0) entries.push({ name: `d${i / 100}/`, type: 'dir', mode: 0o755, mtime: 1e9 });
  const size = 100 + ((i * 7919) % 3000);
  const off = (i * 104729) % (pool.length - size);
  entries.push({ name: `d${Math.floor(i / 100)}/f${i}`, type: 'file', mode: 0o644, mtime: 1e9, data: pool.subarray(off, off + size) });
}
for (let i = 0; i < large; i++) entries.push({ name: `big${i}`, type: 'file', mode: 0o644, mtime: 1e9, data: randomBytes(largeMiB << 20) });
const tar = buildTar(entries);
const blob = gzipSync(tar, { level: 6 });
const digest = api.digestOf(blob);
console.log(`layer: ${small} small files + ${large} x ${largeMiB} MiB, tar ${(tar.length / 1e6).toFixed(1)} MB, gzip ${(blob.length / 1e6).toFixed(1)} MB ${digest}`);

const DiffClient = api.grpcClientConstructor('containerd.services.diff.v1.Diff');

function apply(stub, mounts) {
  const md = new grpc.Metadata();
  md.set(api.NAMESPACE_HEADER, NS);
  const req = {
    diff: { mediaType: MediaTypes.ociLayerGzip, digest, size: blob.length },
    mounts: mounts.map((m) => ({ type: m.type, source: m.source, options: m.options })),
  };
  return new Promise((resolve, reject) => {
    stub.Apply(req, md, { deadline: Date.now() + 600_000 }, (err, res) => (err ? reject(err) : resolve(res.applied)));
  });
}

const daemons = await startBoth();
const results = {};
const sides = [];
try {
  for (const [name, d] of Object.entries(daemons)) {
    const client = connect(d.address);
    const stub = new DiffClient(`unix://${d.address}`, grpc.credentials.createInsecure());
    sides.push({ name, client, stub, times: [] });
    const w = await client.content.writer({ namespace: NS }, { ref: 'bench-layer', desc: { digest, size: blob.length } });
    await w.write(blob);
    await w.commit(blob.length, digest, { labels: { 'containerd.io/gc.root': 'bench' } });
    await w.close();
  }
  // Rounds alternate between the daemons; dirty pages are flushed before each apply and
  // nothing is removed until the end, so neither pays for the other's writeback or cleanup.
  for (let run = 0; run < runs; run++) {
    for (const side of sides) {
      const key = `unpack-${run}`;
      const mounts = await side.client
        .snapshots('overlayfs')
        .prepare({ namespace: NS }, key, '', { labels: { 'containerd.io/gc.root': 'bench' } });
      await exec('sync', []);
      let applied;
      const s = await timed(async () => {
        applied = await apply(side.stub, mounts);
      });
      if (applied.size !== tar.length) throw new Error(`${side.name}: applied ${applied.size} bytes, expected ${tar.length}`);
      side.times.push(s);
      console.log(`${side.name}: run ${run + 1}: ${s.toFixed(2)} s (${(tar.length / 1e6 / s).toFixed(0)} MB/s uncompressed) ${applied.digest}`);
    }
  }
  for (const side of sides) {
    const times = [...side.times].sort((a, b) => a - b);
    results[side.name] = { best: times[0], median: times[Math.floor(times.length / 2)] };
  }
} finally {
  for (const side of sides) {
    side.stub.close();
    side.client.close();
  }
  await stopAll(daemons);
}

const c = results.containerd;
report(`unpack: ${(blob.length / 1e6).toFixed(0)} MB gzip layer onto overlayfs through Diff.Apply (seconds; ratio < 1 means berthd is faster)`, [
  { metric: 'apply, best of runs', berthd: results.berthd.best, containerd: c?.best, unit: 's' },
  { metric: 'apply, median', berthd: results.berthd.median, containerd: c?.median, unit: 's' },
]);
