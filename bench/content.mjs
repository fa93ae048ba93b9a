// Ingest and read throughput of one large blob through the gRPC Content API, berthd
// against containerd, with the same stock client (ctr content ingest/get).
// Usage: pnpm bench content [--size-mib 1024]
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { exec, report, startBoth, stopAll, testkit, timed } from './_common.mjs';

const sizeArg = process.argv.indexOf('--size-mib');
const sizeMiB = sizeArg > 0 ? Number(process.argv[sizeArg + 1]) : 1024;
const size = sizeMiB * 1024 * 1024;

const dir = testkit.makeTempDir('berth-bench-content-');
const file = join(dir, 'blob');
const hash = createHash('sha256');
const fd = openSync(file, 'w');
const chunk = Buffer.alloc(8 * 1024 * 1024);
for (let done = 0; done < size; done += chunk.length) {
  const part = chunk.subarray(0, Math.min(chunk.length, size - done));
  randomFillSync(part);
  hash.update(part);
  writeSync(fd, part);
}
closeSync(fd);
const digest = `sha256:${hash.digest('hex')}`;
console.log(`blob: ${sizeMiB} MiB ${digest}`);

const daemons = await startBoth();
const results = {};
try {
  for (const [name, d] of Object.entries(daemons)) {
    const input = openSync(file, 'r');
    const ingest = await timed(() =>
      exec('/usr/bin/ctr', ['--address', d.address, 'content', 'ingest', '--expected-size', String(size), '--expected-digest', digest, 'bench'], { stdin: input }),
    );
    closeSync(input);
    const devnull = openSync('/dev/null', 'w');
    const read = await timed(() => exec('/usr/bin/ctr', ['--address', d.address, 'content', 'get', digest], { stdout: devnull }));
    closeSync(devnull);
    results[name] = { ingest: size / 2 ** 20 / ingest, read: size / 2 ** 20 / read, ingestS: ingest, readS: read };
    console.log(`${name}: ingest ${ingest.toFixed(2)} s, read ${read.toFixed(2)} s`);
  }
} finally {
  await stopAll(daemons);
  rmSync(dir, { recursive: true, force: true });
}

const c = results.containerd;
report(`content: ${sizeMiB} MiB through the Content API with ctr (MiB/s; ratio > 1 means berthd is faster)`, [
  { metric: 'ingest throughput', berthd: results.berthd.ingest, containerd: c?.ingest, unit: 'MiB/s' },
  { metric: 'read throughput', berthd: results.berthd.read, containerd: c?.read, unit: 'MiB/s' },
], { lowerIsBetter: false });
