/**
 * Micro benchmark of the local store's write path (no daemon): ingests N MiB in chunks of
 * C KiB, commits, and prints MiB/s for the write+commit and for a full read back.
 *
 *   node packages/content/bench/run.js [totalMiB=1024] [chunkKiB=1024] [dir=os.tmpdir()]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLocalStore } from '../src/index';

async function main(): Promise<void> {
  const totalMiB = Number(process.argv[2] ?? 1024);
  const chunkKiB = Number(process.argv[3] ?? 1024);
  const root = mkdtempSync(join(process.argv[4] ?? tmpdir(), 'berth-content-bench-'));
  try {
    const store = await openLocalStore(root);
    const chunk = randomBytes(chunkKiB * 1024);
    const total = totalMiB * 1024 * 1024;
    const w = await store.writer({}, { ref: 'bench', desc: { size: total } });
    const t0 = process.hrtime.bigint();
    for (let n = 0; n < total; n += chunk.length) await w.write(chunk.subarray(0, Math.min(chunk.length, total - n)));
    const t1 = process.hrtime.bigint();
    const digest = w.digest();
    await w.commit(total, digest);
    const t2 = process.hrtime.bigint();
    const ra = await store.readerAt({}, { digest });
    for (let off = 0; off < ra.size; off += 4 << 20) await ra.readAt(off, 4 << 20);
    await ra.close();
    const t3 = process.hrtime.bigint();
    const rate = (ns: bigint) => (totalMiB / (Number(ns) / 1e9)).toFixed(0);
    console.log(
      `write ${totalMiB} MiB in ${chunkKiB} KiB chunks: ${rate(t1 - t0)} MiB/s; ` +
        `commit ${(Number(t2 - t1) / 1e6).toFixed(0)} ms; read ${rate(t3 - t2)} MiB/s`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

void main();
