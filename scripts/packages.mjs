// The workspace's published packages, found rather than listed: every packages/*/package.json
// without "private": true. The release script and the tarball test both pack through here,
// so a new package needs only a package.json written like the others.
// examples/* are packed only when asked for (the tarball test installs them beside the daemon):
// they stand for third parties' packages, published under their authors' names, so berth's own
// release (the @berth scope, versioned together by changesets) leaves them out.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * { name, version, dir, manifest } of each published package under packages/ (and examples/
 * with { examples: true }), by name.
 */
export function publishedPackages({ examples = false } = {}) {
  const out = [];
  const entries = (folder) => readdirSync(join(root, folder)).map((entry) => join(root, folder, entry));
  for (const dir of [...entries('packages'), ...(examples ? entries('examples') : [])]) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const manifest = JSON.parse(readFileSync(file, 'utf8'));
    if (manifest.private === true) continue;
    out.push({ name: manifest.name, version: manifest.version, dir: dirname(file), manifest });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} (in ${opts.cwd ?? root}) exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`,
    );
  }
  return r.stdout;
}

/**
 * Packs every published package (and example, with { examples: true }) into dest with
 * `pnpm pack` (its prepack builds it; pnpm turns `workspace:^` into `^<version>`).
 * Returns [{ name, version, tarball }].
 */
export function packAll(dest, { examples = false } = {}) {
  run('pnpm', ['run', '--silent', 'build']);
  return publishedPackages({ examples }).map((pkg) => {
    const out = run('pnpm', ['pack', '--json', '--pack-destination', dest], { cwd: pkg.dir });
    // the prepack build's output comes first; pnpm's JSON starts on a line of its own
    const { filename } = JSON.parse(out.slice(out.search(/^\{$/m)));
    return { name: pkg.name, version: pkg.version, tarball: filename };
  });
}

const require = createRequire(import.meta.url);

/**
 * What publint (at suggestion level, on the tarball's own files) and arethetypeswrong (node16
 * profile: Node >= 20 and TypeScript's node16/bundler resolution, which read "exports") say of a
 * packed package: a list of lines, empty when both are clean.
 */
export async function lintTarball(tarball) {
  const { publint } = await import('publint');
  const { formatMessage } = await import('publint/utils');
  const data = readFileSync(tarball);
  const bytes = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const { messages, pkg } = await publint({ pack: { tarball: bytes }, level: 'suggestion', strict: true });
  const problems = messages.map((m) => `publint ${m.type}: ${formatMessage(m, pkg, { color: false })}`);
  const attw = join(dirname(require.resolve('@arethetypeswrong/cli/package.json')), 'dist', 'index.js');
  const r = spawnSync(process.execPath, [attw, tarball, '--format', 'json', '--profile', 'node16'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  let analysis;
  try {
    analysis = JSON.parse(r.stdout).analysis;
  } catch {
    problems.push(`attw exited ${r.status}: ${r.stderr.trim() || r.stdout.trim()}`);
    return problems;
  }
  // The node16 profile leaves out node10 resolution (it cannot read "exports" subpaths such as
  // ./testing); attw's JSON lists those problems anyway, so they are dropped here as its exit code does.
  for (const p of analysis.problems ?? []) {
    if (p.resolutionKind === 'node10') continue;
    problems.push(`attw ${p.kind}: ${[p.entrypoint, p.resolutionKind].filter(Boolean).join(' ')}`);
  }
  if (r.status !== 0 && problems.length === 0) problems.push(`attw exited ${r.status}: ${r.stderr.trim()}`);
  return problems;
}

// node scripts/packages.mjs pack DIR [--examples] -> JSON [{ name, version, tarball }] on stdout
// node scripts/packages.mjs lint TARBALL... -> JSON { [tarball]: [problem...] } on stdout
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [cmd, ...rest] = process.argv.slice(2);
  const examples = rest.at(-1) === '--examples';
  if (cmd === 'pack' && rest.length === (examples ? 2 : 1)) {
    process.stdout.write(`${JSON.stringify(packAll(rest[0], { examples }))}\n`);
  } else if (cmd === 'lint' && rest.length > 0) {
    const out = {};
    for (const tarball of rest) out[tarball] = await lintTarball(tarball);
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    console.error('usage: packages.mjs pack DIR [--examples] | lint TARBALL...');
    process.exit(2);
  }
}
