import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Context } from '@berth/api';
import { openLocalStore } from '@berth/content';
import { ingestRef, pull, RegistryClient } from '@berth/images';
import { type FaultyProxy, type Registry, startFaultyProxy, startRegistry, stopChild } from '@berth/testkit';
import { buildImage, file, noise, pushImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
const pkg = resolve(__dirname, '..');

// The child runs the built package (dist/), as the daemon would.
const CHILD = `
const { openLocalStore } = require('@berth/content');
const { pull, RegistryClient } = require('@berth/images');
(async () => {
  const content = await openLocalStore(process.argv[1]);
  await pull({ namespace: 'default' }, process.argv[2], {
    content,
    client: new RegistryClient({ progressTimeoutMs: 120000 }),
    onProgress: (e) => { if (e.type === 'blob') process.stdout.write(JSON.stringify(e) + '\\n'); },
  });
  process.stdout.write('DONE\\n');
})().catch((e) => { process.stderr.write(String(e.stack || e)); process.exit(2); });
`;

describe('resume across a killed process', () => {
  let registry: Registry;
  let proxy: FaultyProxy;
  let work: string;

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultyProxy(registry);
  });
  afterAll(async () => {
    await proxy?.close();
    await registry?.stop();
  });
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'berth-restart-'));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('SIGKILL mid-layer, then the same pull: bytes already fetched are not fetched again', async () => {
    const img = buildImage({ layers: [[file('big', noise(8_000_000))]], compression: 'none' });
    await pushImage(registry.url, 'restart/app', 'v1', img);
    const big = img.layers[0]!.desc;
    const ref = `${proxy.host}/restart/app:v1`;
    const root = join(work, 'content');
    // The layer stops after 3 MB and hangs: the child is killed while it waits.
    proxy.addFault({
      method: 'GET',
      path: `/blobs/${big.digest}`,
      fault: { kind: 'stall', bytes: 3_000_000 },
      times: 1,
    });

    const child = spawn(process.execPath, ['-e', CHILD, root, ref], {
      cwd: pkg,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (b) => {
      stderr += b;
    });
    try {
      await new Promise<void>((res, rej) => {
        let buf = '';
        const timer = setTimeout(() => rej(new Error(`child made no progress: ${stderr}`)), 30_000);
        child.stdout!.on('data', (b: Buffer) => {
          buf += b.toString();
          for (const line of buf.split('\n').slice(0, -1)) {
            if (line === 'DONE') continue;
            const e = JSON.parse(line);
            if (e.digest === big.digest && e.offset >= 3_000_000) {
              clearTimeout(timer);
              res();
            }
          }
          buf = buf.slice(buf.lastIndexOf('\n') + 1);
        });
        child.once('exit', (code) => rej(new Error(`child exited ${code} early: ${stderr}`)));
      });
    } finally {
      await stopChild(child, 'SIGKILL');
    }

    const content = await openLocalStore(root);
    const have = (await content.status(ctx, ingestRef(big))).offset;
    expect(have).toBe(3_000_000);
    const before = proxy.bytesServed(big.digest);
    await pull(ctx, ref, { content, client: new RegistryClient() });
    expect((await content.info(ctx, big.digest)).size).toBe(big.size);
    const last = proxy.requests.filter((r) => r.path.endsWith(big.digest)).pop()!;
    expect(last.range).toBe(`bytes=${have}-`);
    expect(proxy.bytesServed(big.digest) - before).toBe(big.size - have);
  });
});
