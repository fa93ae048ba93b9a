/**
 * Image and container records as a user of the stock ctr sees them: the same script of
 * `ctr images`, `ctr containers`, `ctr content` and `ctr namespaces` commands runs against
 * berthd and against Debian's containerd while `ctr events` watches, and every command's
 * output, and every event line (topic and payload), must agree. Images and containers are
 * made through the Images and Containers gRPC APIs (ctr's own create needs an unpacked
 * image), with content written through the Content API.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type Context, digestOf, SPEC_TYPE_URL } from '@berth/api';
import { type Client, connect } from '@berth/client';
import { containerdInstalled, ctr, type Daemon, startBerthd, startContainerd } from '@berth/testkit';

const NS = 'records-e2e';
const IMAGE = 'example.com/records/app:1';
const TAG = 'example.com/records/app:tagged';
const MISSING = 'example.com/records/app:missing';

const SPEC = JSON.stringify({
  ociVersion: '1.0.2-dev',
  process: { user: { uid: 0, gid: 0 }, args: ['/bin/sh'], cwd: '/' },
  root: { path: 'rootfs' },
});

/** A small image: a layer, a config naming it, a manifest with the gc.ref labels a pull sets. */
function imageBlobs() {
  const layer = randomBytes(1500);
  const layerDigest = digestOf(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
      config: { Cmd: ['/bin/sh'] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: digestOf(config),
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
      ],
    }),
  );
  return { layer, config, manifest };
}
const BLOBS = imageBlobs();
/** A blob of its own, rooted, that the script deletes with ctr (a /content/delete event). */
const NOTE = Buffer.from('a note kept by a gc.root label\n');

async function write(
  client: Client,
  ctx: Context,
  data: Buffer,
  labels: Record<string, string> = {},
): Promise<void> {
  const digest = digestOf(data);
  const w = await client.content.writer(ctx, {
    ref: `e2e-${digest.slice(7, 19)}`,
    desc: { digest, size: data.length },
  });
  try {
    await w.write(data.subarray((await w.status()).offset));
    await w.commit(data.length, digest, { labels });
  } finally {
    await w.close();
  }
}

/** Writes the image content under a lease, records the image and two containers through the APIs. */
async function setUp(client: Client): Promise<void> {
  const ns = { namespace: NS };
  const lease = await client.leases.create(ns, {});
  const ctx = { ...ns, lease: lease.id };
  await write(client, ctx, BLOBS.layer);
  await write(client, ctx, BLOBS.config);
  await write(client, ctx, BLOBS.manifest, {
    'containerd.io/gc.ref.content.config': digestOf(BLOBS.config),
    'containerd.io/gc.ref.content.l.0': digestOf(BLOBS.layer),
  });
  await client.images.create(ns, {
    name: IMAGE,
    labels: { team: 'core' },
    target: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: digestOf(BLOBS.manifest),
      size: BLOBS.manifest.length,
    },
  });
  await write(client, ns, NOTE, { 'containerd.io/gc.root': 'e2e' });
  await client.leases.delete(ns, lease.id);
  for (const id of ['web', 'db']) {
    await client.containers.create(ns, {
      id,
      labels: { app: id },
      image: id === 'web' ? IMAGE : '',
      runtime: { name: 'io.containerd.runc.v2' },
      spec: { typeUrl: SPEC_TYPE_URL, value: Buffer.from(SPEC) },
      snapshotter: '',
      snapshotKey: '',
      extensions: {},
      sandbox: '',
    });
  }
}

/** The ctr commands, happy paths and error paths, in order. */
function script(): string[][] {
  const n = ['-n', NS];
  return [
    [...n, 'images', 'ls'],
    [...n, 'images', 'ls', '-q'],
    [...n, 'images', 'tag', IMAGE, TAG],
    [...n, 'images', 'tag', IMAGE, TAG],
    [...n, 'images', 'tag', '--force', IMAGE, TAG],
    [...n, 'images', 'tag', MISSING, 'x'],
    [...n, 'images', 'label', TAG, 'stage=test'],
    [...n, 'images', 'ls', 'labels.stage==test'],
    [...n, 'images', 'ls', `name==${IMAGE}`],
    [...n, 'images', 'rm', TAG, MISSING],
    [...n, 'images', 'ls', '-q'],
    [...n, 'containers', 'ls'],
    [...n, 'containers', 'ls', '-q', 'labels.app==db'],
    [...n, 'containers', 'ls', 'image~=records'],
    [...n, 'containers', 'info', 'web'],
    [...n, 'containers', 'info', '--spec', 'db'],
    [...n, 'containers', 'info', 'nope'],
    [...n, 'containers', 'label', 'web', 'tier=front'],
    [...n, 'containers', 'info', 'web'],
    ['namespaces', 'rm', NS],
    [...n, 'containers', 'rm', 'db', 'nope'],
    [...n, 'containers', 'rm', 'web'],
    [...n, 'containers', 'ls', '-q'],
    [...n, 'content', 'rm', digestOf(NOTE)],
    [...n, 'content', 'ls', '-q'],
    [...n, 'images', 'rm', '--sync', IMAGE],
    [...n, 'content', 'ls', '-q'],
    [...n, 'images', 'ls'],
    ['namespaces', 'rm', NS],
  ];
}

/** Masks what legitimately differs between two runs: times, ages, label order in ctr's own lists. */
function normalise(text: string): string {
  return text
    .replace(/[^\s=,"]+=[^\s,"]*(?:,[^\s=,"]+=[^\s,"]*)+/g, (labels) => labels.split(',').sort().join(','))
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g, '<TIME>')
    .replace(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? \+0000 UTC/g, '<TIME>')
    .replace(/time="[^"]*"/g, 'time=<TIME>')
    .replace(/[ \t]+/g, ' ')
    .replace(/ +$/gm, '');
}

/** `ctr events` running in the background, its stdout collected. */
class EventWatcher {
  private readonly child: ChildProcess;
  private out = '';

  constructor(address: string) {
    this.child = spawn('/usr/bin/ctr', ['--address', address, 'events'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (b: Buffer) => {
      this.out += b.toString();
    });
  }

  /** Publishes a marker event until ctr prints it: then every earlier event has been printed. */
  async mark(client: Client, name: string): Promise<void> {
    const topic = `/e2e/${name}`;
    for (let i = 0; i < 100 && !this.out.includes(` ${topic} `); i++) {
      await client.events.publish({ namespace: 'marks' }, topic, {
        typeUrl: 'containerd.events.ContainerDelete',
        value: Buffer.from([10, name.length, ...Buffer.from(name)]),
      });
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!this.out.includes(` ${topic} `)) throw new Error(`ctr events never printed ${topic}:\n${this.out}`);
  }

  lines(): string[] {
    return this.out.split('\n').filter((l) => l !== '' && !l.includes(' /e2e/'));
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

interface Run {
  transcript: string[];
  events: string[];
  contentBefore: number;
  contentAfter: number;
}

async function runScript(address: string): Promise<Run> {
  const client = connect(address);
  const watcher = new EventWatcher(address);
  try {
    await watcher.mark(client, 'start');
    const created = await ctr(address, ['namespaces', 'create', NS]);
    if (created.code !== 0) throw new Error(created.stderr);
    await setUp(client);
    const transcript: string[] = [];
    const counts: number[] = [];
    for (const args of script()) {
      const r = await ctr(address, args);
      if (args.includes('content') && args.includes('ls'))
        counts.push(r.stdout.split('\n').filter(Boolean).length);
      transcript.push(
        `$ ctr ${args.join(' ')}\nexit ${r.code}\n${normalise(r.stdout)}${normalise(r.stderr)}`,
      );
    }
    await watcher.mark(client, 'end');
    return {
      transcript,
      events: watcher.lines().map(normalise),
      contentBefore: counts[0]!,
      contentAfter: counts[1]!,
    };
  } finally {
    await watcher.stop();
    client.close();
  }
}

const describeIf = containerdInstalled() && process.getuid?.() === 0 ? describe : describe.skip;

describeIf('stock ctr: images, containers and events from berthd as from containerd', () => {
  let berthd: Daemon;
  let containerd: Daemon;
  let expected: Run;
  let actual: Run;

  beforeAll(async () => {
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
    expected = await runScript(containerd.address);
    actual = await runScript(berthd.address);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([berthd?.dispose(), containerd?.dispose()]);
  });

  test('every command prints the same', () => {
    expect(actual.transcript.join('\n')).toBe(expected.transcript.join('\n'));
  });

  test('ctr events shows the same topics and payloads, in the same order', () => {
    expect(actual.events.join('\n')).toBe(expected.events.join('\n'));
    const topics = actual.events.map((l) => l.split(' ')[2]);
    expect(topics).toEqual([
      '/namespaces/create',
      '/images/create',
      '/containers/create',
      '/containers/create',
      '/images/create',
      '/images/delete',
      '/images/create',
      '/images/update',
      '/images/delete',
      '/containers/update',
      '/containers/delete',
      '/containers/delete',
      '/content/delete',
      '/images/delete',
      '/namespaces/delete',
    ]);
  });

  test('removing the last image with --sync frees its manifest, config and layer', () => {
    expect(actual.contentBefore).toBe(3);
    expect(actual.contentAfter).toBe(0);
    expect(expected.contentAfter).toBe(0);
  });
});
