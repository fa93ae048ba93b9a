import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Context, digestOf } from '@berth/api';
import { type Client, connect } from '@berth/client';
import {
  berth,
  containerdInstalled,
  ctr,
  type Daemon,
  type RunResult,
  repoRoot,
  startBerthd,
  startContainerd,
} from '@berth/testkit';

// bin/berth's images, containers and events commands against containerd and berthd; where
// ctr prints the same thing, berth's output is compared with ctr's byte for byte.
const isRoot = process.getuid?.() === 0;
const built = existsSync(join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const daemons: [string, () => Promise<Daemon>][] = [];
if (built && isRoot && containerdInstalled()) daemons.push(['containerd', () => startContainerd()]);
if (built && existsSync(join(repoRoot, 'packages', 'daemon', 'dist', 'main.js'))) {
  daemons.push(['berthd', () => startBerthd()]);
}
if (daemons.length === 0) it.skip('needs a built CLI (pnpm build) and a daemon to talk to', () => {});

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function write(client: Client, ctx: Context, data: Buffer, labels: Record<string, string> = {}) {
  const digest = digestOf(data);
  const w = await client.content.writer(ctx, {
    ref: `cli-${digest.slice(7, 19)}`,
    desc: { digest, size: data.length },
  });
  try {
    await w.write(data.subarray((await w.status()).offset));
    await w.commit(data.length, digest, { labels });
  } finally {
    await w.close();
  }
  return digest;
}

/** An image whose one layer is "unpacked" as an empty committed snapshot named by its chain id. */
async function makeImage(client: Client, ns: string, name: string) {
  const ctx = { namespace: ns };
  const lease = await client.leases.create(ctx, {});
  const leased = { ...ctx, lease: lease.id };
  const layerDiffId = digestOf(randomBytes(32));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [layerDiffId] },
      config: {
        Env: ['PATH=/bin', 'FROM_IMAGE=1'],
        Cmd: ['/bin/sh'],
        WorkingDir: '/work',
        Labels: { from: 'image' },
      },
    }),
  );
  const layer = randomBytes(700);
  const configDigest = await write(client, leased, config);
  const layerDigest = await write(client, leased, layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
      ],
    }),
  );
  const manifestDigest = await write(client, leased, manifest, {
    'containerd.io/gc.ref.content.config': configDigest,
    'containerd.io/gc.ref.content.l.0': layerDigest,
  });
  await client.images.create(ctx, {
    name,
    labels: {},
    target: { mediaType: MANIFEST, digest: manifestDigest, size: manifest.length },
  });
  const sn = client.snapshots('overlayfs');
  await sn.prepare(leased, 'unpack', '');
  await sn.commit(leased, layerDiffId, 'unpack', { labels: { 'containerd.io/gc.root': 'cli-e2e' } });
  await client.leases.delete(ctx, lease.id);
  return { chainId: layerDiffId, blobs: 3 };
}

/** A command streaming lines in the background. */
class Streaming {
  readonly child: ChildProcess;
  out = '';
  err = '';
  constructor(cmd: string, args: string[]) {
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (b: Buffer) => {
      this.out += b.toString();
    });
    this.child.stderr!.on('data', (b: Buffer) => {
      this.err += b.toString();
    });
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

describe.each(daemons)('berth images, containers and events against %s', (_name, start) => {
  let daemon: Daemon;
  let client: Client;
  let ns: string;
  let dir: string;

  beforeAll(async () => {
    daemon = await start();
    client = connect(daemon.address);
    dir = join(daemon.dir, 'rootfs');
    mkdirSync(dir, { recursive: true });
  });
  afterAll(async () => {
    client?.close();
    await daemon?.dispose();
  });
  beforeEach(() => {
    ns = `cli-${randomBytes(4).toString('hex')}`;
  });

  const b = (args: string[]): Promise<RunResult> => berth(daemon.address, ['-n', ns, ...args]);
  const c = (args: string[]): Promise<RunResult> => ctr(daemon.address, ['-n', ns, ...args]);
  const ok = async (args: string[]): Promise<string> => {
    const r = await b(args);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    expect(r.stderr).toBe('');
    return r.stdout;
  };
  const fails = async (args: string[]): Promise<string> => {
    const r = await b(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^berth: /);
    return r.stderr;
  };

  it('images: ls (as ctr), tag, label, inspect, rm, and rm --sync frees the content', async () => {
    await makeImage(client, ns, 'example.com/cli/app:1');
    const table = await ok(['images', 'ls']);
    expect(table).toMatch(
      /^REF +TYPE +DIGEST +SIZE +PLATFORMS +LABELS +\nexample\.com\/cli\/app:1 .* linux\/amd64 +- +\n$/,
    );
    expect(table).toBe((await c(['images', 'ls'])).stdout);

    expect(
      await ok(['images', 'tag', 'example.com/cli/app:1', 'example.com/cli/app:2', 'example.com/cli/app:3']),
    ).toBe('example.com/cli/app:2\nexample.com/cli/app:3\n');
    expect(await fails(['images', 'tag', 'example.com/cli/app:1', 'example.com/cli/app:2'])).toMatch(
      /already exists/,
    );
    expect(await ok(['images', 'tag', '--force', 'example.com/cli/app:1', 'example.com/cli/app:2'])).toBe(
      'example.com/cli/app:2\n',
    );
    expect(await fails(['images', 'tag', 'example.com/cli/missing', 'x'])).toMatch(/not found/);
    expect(await ok(['images', 'label', 'example.com/cli/app:2', 'b=2', 'a=1'])).toBe('a=1,b=2\n');
    expect(await ok(['images', 'label', 'example.com/cli/app:2', 'b='])).toBe('a=1\n');
    expect(await ok(['images', 'ls', '-q', 'labels.a==1'])).toBe('example.com/cli/app:2\n');
    expect(await ok(['images', 'ls'])).toBe((await c(['images', 'ls'])).stdout);

    const inspected = JSON.parse(await ok(['images', 'inspect', 'example.com/cli/app:2']));
    expect(inspected).toMatchObject({
      name: 'example.com/cli/app:2',
      labels: { a: '1' },
      platforms: ['linux/amd64'],
    });
    expect(inspected.size).toBeGreaterThan(700);
    const listed = JSON.parse(await ok(['--format', 'json', 'images', 'ls']));
    expect(listed.map((i: { name: string }) => i.name)).toEqual([
      'example.com/cli/app:1',
      'example.com/cli/app:2',
      'example.com/cli/app:3',
    ]);

    const rm = await b([
      'images',
      'rm',
      'example.com/cli/app:2',
      'example.com/cli/nope',
      'example.com/cli/app:3',
    ]);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toBe('example.com/cli/app:2\nexample.com/cli/app:3\n');
    expect(rm.stderr).toBe('berth: example.com/cli/nope: image not found\n');
    expect((await c(['content', 'ls', '-q'])).stdout.trim().split('\n')).toHaveLength(3);
    expect(await ok(['images', 'rm', '--sync', 'example.com/cli/app:1'])).toBe('example.com/cli/app:1\n');
    expect((await c(['content', 'ls', '-q'])).stdout).toBe('');
    expect(await ok(['images', 'ls', '-q'])).toBe('');
  });

  it('containers: create from a rootfs and from an image, ls and info (as ctr), label, rm', async () => {
    const { chainId } = await makeImage(client, ns, 'example.com/cli/app:1');
    expect(
      await ok(['containers', 'create', '--rootfs', '--label', 'app=raw', dir, 'raw', '/bin/echo', 'hi']),
    ).toBe('');
    expect(
      await ok([
        'containers',
        'create',
        '--env',
        'X=1',
        '--label',
        'app=img',
        'example.com/cli/app:1',
        'fromimg',
      ]),
    ).toBe('');
    const table = await ok(['containers', 'ls']);
    expect(table).toMatch(
      /^CONTAINER +IMAGE +RUNTIME +\nfromimg +example\.com\/cli\/app:1 +io\.containerd\.berth\.v1 +\nraw +- +io\.containerd\.berth\.v1 +\n$/,
    );
    expect(table).toBe((await c(['containers', 'ls'])).stdout);
    expect(await ok(['c', 'ls', '-q', 'labels.app==img'])).toBe('fromimg\n');

    // The spec's key order is ctr's Go struct order there: compare as data.
    // Times too: berth carries milliseconds, containerd's records have nanoseconds.
    const info = JSON.parse(await ok(['containers', 'info', 'fromimg']));
    const untimed = (v: Record<string, unknown>) => ({ ...v, CreatedAt: 'T', UpdatedAt: 'T' });
    expect(untimed(info)).toEqual(untimed(JSON.parse((await c(['containers', 'info', 'fromimg'])).stdout)));
    expect(Date.parse(info.CreatedAt)).not.toBeNaN();
    expect(info).toMatchObject({
      ID: 'fromimg',
      Image: 'example.com/cli/app:1',
      Snapshotter: 'overlayfs',
      SnapshotKey: 'fromimg',
      Labels: { app: 'img', from: 'image', 'io.containerd.image.config.stop-signal': 'SIGTERM' },
    });
    expect(info.Spec.process.env).toEqual(['PATH=/bin', 'FROM_IMAGE=1', 'X=1']);
    expect(info.Spec.process.args).toEqual(['/bin/sh']);
    expect(info.Spec.process.cwd).toBe('/work');
    expect((await client.snapshots('overlayfs').stat({ namespace: ns }, 'fromimg')).parent).toBe(chainId);
    const raw = JSON.parse(await ok(['containers', 'info', '--spec', 'raw']));
    expect(raw.root.path).toBe(dir);
    expect(raw.process.args).toEqual(['/bin/echo', 'hi']);

    expect(await ok(['containers', 'label', 'raw', 'tier=back', 'app='])).toBe('tier=back\n');
    expect(await fails(['containers', 'info', 'nope'])).toMatch(/not found/);
    expect(await fails(['containers', 'create', '--rootfs', dir, 'raw'])).toMatch(/already exists/);
    expect(await fails(['containers', 'create', 'example.com/cli/none', 'x'])).toMatch(/not found/);

    const rm = await b(['containers', 'rm', 'raw', 'nope', 'fromimg']);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toMatch(/^berth: failed to delete container "nope": .*not found/);
    expect(await ok(['containers', 'ls', '-q'])).toBe('');
    // The container's snapshot went with it; the image's stays.
    await expect(client.snapshots('overlayfs').stat({ namespace: ns }, 'fromimg')).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
    expect((await client.snapshots('overlayfs').stat({ namespace: ns }, chainId)).kind).toBe('committed');
  });

  it('events: the same lines as ctr events, filters applied', async () => {
    const all = new Streaming(process.execPath, [
      join(repoRoot, 'bin', 'berth'),
      '--address',
      daemon.address,
      'events',
    ]);
    const images = new Streaming(process.execPath, [
      join(repoRoot, 'bin', 'berth'),
      '--address',
      daemon.address,
      'events',
      `namespace==${ns},topic~="^/images/"`,
    ]);
    const fromCtr = new Streaming('/usr/bin/ctr', ['--address', daemon.address, 'events']);
    const watchers = [all, images, fromCtr];
    try {
      // Each subscription starts asynchronously: publish a marker until all three print it.
      const mark = async (name: string) => {
        const topic = `/images/cli-e2e-${name}`;
        for (let i = 0; i < 100 && !watchers.every((w) => w.out.includes(topic)); i++) {
          await client.events.publish({ namespace: ns }, topic, {
            typeUrl: 'containerd.services.images.v1.ImageDelete',
            value: Buffer.from([10, 1, 120]),
          });
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(watchers.map((w) => w.out.includes(topic))).toEqual([true, true, true]);
      };
      await mark('start');
      await makeImage(client, ns, 'example.com/cli/ev:1');
      await ok(['images', 'label', 'example.com/cli/ev:1', 'x=<y>']);
      await ok(['containers', 'create', '--rootfs', dir, 'ev']);
      await ok(['containers', 'label', 'ev', 'k=v']);
      await ok(['containers', 'rm', 'ev']);
      await ok(['images', 'rm', 'example.com/cli/ev:1']);
      await mark('end');
      const lines = (w: Streaming) =>
        w.out
          .split('\n')
          .filter((l) => l.includes(` ${ns} `) && !l.includes('/images/cli-e2e-'))
          .map((l) => l.replace(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? \+0000 UTC /, '<TIME> '));
      expect(lines(all)).toEqual(lines(fromCtr));
      expect(lines(all).map((l) => l.split(' ')[2])).toEqual([
        '/images/create',
        '/snapshot/prepare',
        '/snapshot/commit',
        '/images/update',
        '/containers/create',
        '/containers/update',
        '/containers/delete',
        '/images/delete',
      ]);
      expect(lines(all)[3]).toBe(
        `<TIME> ${ns} /images/update {"name":"example.com/cli/ev:1","labels":{"x":"\\u003cy\\u003e"}}`,
      );
      expect(lines(images).map((l) => l.split(' ')[2])).toEqual([
        '/images/create',
        '/images/update',
        '/images/delete',
      ]);
      expect(all.err).toBe('');
    } finally {
      for (const w of watchers) await w.stop();
    }
  });

  it('events: a malformed filter fails with the daemon message', async () => {
    expect(await fails(['events', 'topic=='])).toMatch(/filter/);
  });
});
