#!/usr/bin/env node
// Compiles native/sys.c into build/Release/sys.node (where node-gyp puts it when the published package
// installs) with the system C compiler against the running Node's headers: the workspace build skips
// node-gyp's configure step and does nothing when the addon is up to date.
const { execFileSync } = require('node:child_process');
const { existsSync, mkdirSync, statSync } = require('node:fs');
const { dirname, join } = require('node:path');

const pkg = join(__dirname, '..');
const src = join(pkg, 'native', 'sys.c');
const out = join(pkg, 'build', 'Release', 'sys.node');
const include = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node'].find((d) =>
  existsSync(join(d, 'node_api.h')),
);
if (!include) {
  console.error('node_api.h not found: install Node.js headers (Debian: libnode-dev / nodejs headers)');
  process.exit(1);
}
if (existsSync(out) && statSync(out).mtimeMs > statSync(src).mtimeMs && statSync(out).mtimeMs > statSync(__filename).mtimeMs) process.exit(0);
mkdirSync(dirname(out), { recursive: true });
const cc = process.env.CC || 'cc';
execFileSync(
  cc,
  ['-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-shared', '-fPIC', '-DNODE_GYP_MODULE_NAME=sys', '-DNAPI_VERSION=8', `-I${include}`, '-o', out, src],
  { stdio: 'inherit' },
);
