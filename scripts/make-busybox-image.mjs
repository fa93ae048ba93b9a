#!/usr/bin/env node
// Writes a runnable busybox image (Debian's busybox-static, its applets, /etc/passwd) as an
// OCI image layout archive, built locally: the quick start needs no registry or internet.
// Usage: node scripts/make-busybox-image.mjs OUT.tar [NAME]
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { buildImage, writeOciLayout } = require('../packages/testkit/dist/index.js');

const [out, name = 'berth.local/quickstart/busybox:latest'] = process.argv.slice(2);
if (!out) {
  console.error('usage: make-busybox-image.mjs OUT.tar [NAME]');
  process.exit(2);
}
const image = buildImage({
  layers: ['busybox'],
  config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
});
writeOciLayout(out, image, name);
console.log(name);
