#!/usr/bin/env node
// pnpm release [--dry-run]
//   --dry-run  lists every published package with its version now and the version the pending
//              changesets (.changeset/*.md) give it; writes nothing.
//   (none)     applies the pending changesets (`changeset version`: versions, CHANGELOG.md,
//              dependents' ranges), builds, packs every published package into dist-tarballs/
//              and checks each tarball with publint and arethetypeswrong; exits 1 on any finding.
// Publishing the tarballs (`npm publish dist-tarballs/<file>.tgz`) is left to whoever holds the
// registry credentials.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { lintTarball, packAll, publishedPackages, root } from './packages.mjs';

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--dry-run');
if (unknown.length > 0) {
  console.error(`release: unknown argument ${unknown.join(' ')}\nusage: pnpm release [--dry-run]`);
  process.exit(2);
}
const dryRun = args.includes('--dry-run');

const { default: getReleasePlan } = require('@changesets/get-release-plan');
const plan = await getReleasePlan(root);
const next = new Map(plan.releases.map((r) => [r.name, r]));
const packages = publishedPackages();

const rows = packages.map((p) => {
  const r = next.get(p.name);
  return [
    p.name,
    p.version,
    r && r.type !== 'none' ? r.newVersion : p.version,
    r && r.type !== 'none' ? r.type : 'unchanged',
  ];
});
const widths = [0, 1, 2, 3].map((i) =>
  Math.max(...[['package', 'now', 'next', 'bump'], ...rows].map((r) => r[i].length)),
);
const line = (r) =>
  r
    .map((c, i) => c.padEnd(widths[i]))
    .join('  ')
    .trimEnd();
console.log(`${plan.changesets.length} pending changeset(s)`);
console.log(line(['package', 'now', 'next', 'bump']));
for (const r of rows) console.log(line(r));
if (dryRun) process.exit(0);

if (plan.changesets.length > 0) {
  const r = spawnSync('pnpm', ['exec', 'changeset', 'version'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const dest = join(root, 'dist-tarballs');
rmSync(dest, { recursive: true, force: true });
mkdirSync(dest, { recursive: true });
let failed = 0;
for (const { name, version, tarball } of packAll(dest)) {
  const problems = await lintTarball(tarball);
  failed += problems.length > 0 ? 1 : 0;
  console.log(`${problems.length === 0 ? 'ok  ' : 'FAIL'} ${name}@${version}  ${relative(root, tarball)}`);
  for (const p of problems) console.log(`       ${p}`);
}
if (failed > 0) {
  console.error(`release: ${failed} package(s) with publint/attw findings`);
  process.exit(1);
}
console.log(`release: ${packages.length} tarballs in ${relative(root, dest)}/, publint and attw clean`);
