#!/usr/bin/env node
// The whole suite: build every package (e2e tests run bin/berthd from dist/), then
// one jest run over unit, integration (*.int.test.ts) and end-to-end (*.e2e.test.ts) tests.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit' }).status ?? 1;

if (run('pnpm', ['run', '--silent', 'build']) !== 0) {
  console.error('build failed');
  process.stdout.write('\n0 passed, 1 failed\n');
  process.exit(1);
}
process.exit(run('pnpm', ['exec', 'jest', '--runInBand', ...process.argv.slice(2)]));
