// Ingest and read throughput of one large blob through the gRPC Content API, berthd
// against containerd, with the same clients on both sides: stock ctr (content ingest/get:
// one 1 MiB message per WRITE reply, one Read call per 32 KiB) and berth's own client
// (@berth/client: one pipelined Write stream, one streaming Read of the whole blob).
// Usage: pnpm bench content [--size-mib 1024]
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, createReadStream, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { exec, report, startBoth, stopAll, testkit, timed } from './_common.mjs';

const { connect } = createRequire(import.meta.url)('../packages/client/dist/index.js');

const sizeArg = process.argv.indexOf('--size-mib');
const sizeMiB = sizeArg > 0 ? Number(process.argv[sizeArg + 1]) : 1024;
const size = sizeMiB * 1024 * 1024;

const dir = testkit.makeTempDir('berth-bench-content-');
const file = join(dir, 'blob');
const hash = createHash('sha256');
// The client rows ingest a second blob (the first 8 bytes flipped), so neither daemon
// finds it present already; its digest is hashed alongside.
const hash2 = createHash('sha256');
const fd = openSync(file, 'w');
const chunk = Buffer.alloc(8 * 1024 * 1024);
let head;
for (let done = 0; done < size; done += chunk.length) {
  const part = chunk.subarray(0, Math.min(chunk.length, size - done));
  randomFillSync(part);
  hash.update(part);
  if (done === 0) {
    head = Buffer.from(part.subarray(0, 8)).map((b) => b ^ 0xff);
    hash2.update(head);
    hash2.update(part.subarray(8));
  } else hash2.update(part);
  writeSync(fd, part);
}
closeSync(fd);
const digest = `sha256:${hash.digest('hex')}`;
const digest2 = `sha256:${hash2.digest('hex')}`;
console.log(`blob: ${sizeMiB} MiB ${digest}`);

/** One Write stream (the client pipelines 1 MiB messages), committed with size and digest. */
async function clientIngest(client, ctx, path, expect) {
  const w = await client.content.writer(ctx, { ref: 'bench-client', desc: { size, digest: expect } });
  try {
    for await (const b of createReadStream(path, { highWaterMark: 1 << 20 })) await w.write(b);
    await w.commit(size, expect);
  } finally {
    await w.close();
  }
}

/** One streaming Read of the whole blob. */
async function clientRead(client, ctx, want) {
  let n = 0;
  for await (const b of client.content.read(ctx, want)) n += b.length;
  if (n !== size) throw new Error(`read ${n} bytes of ${want}, expected ${size}`);
}

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
    console.log(`${name}: ctr ingest ${ingest.toFixed(2)} s, read ${read.toFixed(2)} s`);
  }
  // The second blob: the first one with its head flipped.
  const wfd = openSync(file, 'r+');
  writeSync(wfd, head, 0, head.length, 0);
  closeSync(wfd);
  for (const [name, d] of Object.entries(daemons)) {
    const client = connect(d.address);
    const ctx = { namespace: 'bench' };
    try {
      const ingest = await timed(() => clientIngest(client, ctx, file, digest2));
      const read = await timed(() => clientRead(client, ctx, digest2));
      Object.assign(results[name], { cIngest: size / 2 ** 20 / ingest, cRead: size / 2 ** 20 / read });
      console.log(`${name}: @berth/client ingest ${ingest.toFixed(2)} s, read ${read.toFixed(2)} s`);
    } finally {
      client.close();
    }
  }
} finally {
  await stopAll(daemons);
  rmSync(dir, { recursive: true, force: true });
}

const c = results.containerd;
const b = results.berthd;
report(`content: ${sizeMiB} MiB through the Content API (MiB/s; ratio > 1 means berthd is faster)`, [
  { metric: 'ingest, ctr', berthd: b.ingest, containerd: c?.ingest, unit: 'MiB/s' },
  { metric: 'read, ctr', berthd: b.read, containerd: c?.read, unit: 'MiB/s' },
  { metric: 'ingest, @berth/client', berthd: b.cIngest, containerd: c?.cIngest, unit: 'MiB/s' },
  { metric: 'read, @berth/client', berthd: b.cRead, containerd: c?.cRead, unit: 'MiB/s' },
], { lowerIsBetter: false });
