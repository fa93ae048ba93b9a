#!/usr/bin/env node
// `pnpm bench <name>`: runs bench/<name>.mjs (berth and containerd side by side).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const names = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.mjs') && !f.startsWith('_'))
  .map((f) => f.replace(/\.mjs$/, ''));
const [name, ...rest] = process.argv.slice(2);
if (!name || !names.includes(name)) {
  console.error(`usage: pnpm bench <${names.join('|')}> [options]`);
  process.exit(2);
}
if (!existsSync(join(root, 'packages/daemon/dist/main.js'))) {
  console.error('berth is not built: run `pnpm build` first');
  process.exit(1);
}
const r = spawnSync(process.execPath, [join(root, 'bench', `${name}.mjs`), ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
