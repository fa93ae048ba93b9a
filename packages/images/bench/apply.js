/**
 * Layer apply micro benchmark (no daemon): generates a gzip layer of many small files plus
 * a few large ones, applies it with applyLayer into a fresh directory and with GNU tar for
 * reference, and prints MB/s (uncompressed). Needs `pnpm exec tsc -b packages/images` first.
 *
 *   node packages/images/bench/apply.js [smallFiles=40000] [largeMiB=10] [largeFiles=4]
 */
'use strict';
const { execFileSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { createReadStream, mkdtempSync, rmSync, writeFileSync, statSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { gzipSync } = require('node:zlib');
const { applyLayer, buildTar } = require('../dist/index.js');

async function main() {
  const [small = 40000, largeMiB = 10, large = 4] = process.argv.slice(2).map(Number);
  const dir = mkdtempSync(join(tmpdir(), 'berth-apply-bench-'));
  try {
    const entries = [];
    const pool = randomBytes(1 << 20);
    for (let i = 0; i < small; i++) {
      if (i % 100 === 0) entries.push({ name: `d${i / 100}/`, type: 'dir', mode: 0o755 });
      const size = 100 + ((i * 7919) % 3000);
      const off = (i * 104729) % (pool.length - size);
      entries.push({ name: `d${Math.floor(i / 100)}/f${i}`, type: 'file', mode: 0o644, mtime: 1e9, data: pool.subarray(off, off + size) });
    }
    for (let i = 0; i < large; i++) entries.push({ name: `big${i}`, type: 'file', mode: 0o644, data: randomBytes(largeMiB << 20) });
    const tar = buildTar(entries);
    const gz = gzipSync(tar, { level: 1 });
    const blob = join(dir, 'layer.tar.gz');
    writeFileSync(blob, gz);
    console.log(`layer: ${small} small + ${large}x${largeMiB} MiB files, tar ${(tar.length / 1e6).toFixed(1)} MB, gzip ${(gz.length / 1e6).toFixed(1)} MB`);

    const time = async (label, fn) => {
      const out = mkdtempSync(join(dir, 'out-'));
      execFileSync('sync');
      const t0 = process.hrtime.bigint();
      await fn(out);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(`${label.padEnd(28)} ${s.toFixed(2)} s  ${(tar.length / 1e6 / s).toFixed(0)} MB/s`);
      rmSync(out, { recursive: true, force: true });
    };
    for (let round = 0; round < 2; round++) {
      await time('applyLayer', (out) => applyLayer(createReadStream(blob, { highWaterMark: 1 << 20 }), out));
      await time('GNU tar -xzf (reference)', (out) => execFileSync('tar', ['-xzf', blob, '-C', out]));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
