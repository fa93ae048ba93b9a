/**
 * berthd's snapshotters in-process on a temporary root: the conformance suite over its
 * Snapshots gRPC service (overlayfs, native, and a proxy snapshotter from [proxy_plugins]),
 * events, garbage collection of removed snapshots, and the Diff service's Apply and Diff.
 * Needs root (mounts).
 */

import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  type Context,
  decodeAny,
  digestOf,
  GrpcCode,
  grpcClientConstructor,
  type Mount,
  NAMESPACE_HEADER,
  PluginType,
  type Snapshotter,
} from '@berth/api';
import { type Client, connect } from '@berth/client';
import { type Daemon, defaultConfig, type Exchange, type ExchangeEnvelope, startDaemon } from '@berth/daemon';
import { buildTar, MediaTypes, type TarInput, treeDigest } from '@berth/images';
import { openNativeSnapshotter, type SnapshotterServer, serveSnapshotter } from '@berth/snapshotter';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { withTempMount } from '@berth/sys';
import { makeTempDir, removeDir } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

type Any = Record<string, any>;

let dir: string;
let daemon: Daemon;
let cl: Client;
let proxyServer: SnapshotterServer;
let proxyBacking: Snapshotter;
const stubs: grpc.Client[] = [];

beforeAll(async () => {
  dir = makeTempDir('berthd-snapshots-');
  // The proxy snapshotter: a native snapshotter served in this process on its own socket.
  proxyBacking = await openNativeSnapshotter(join(dir, 'proxy-root'), { asyncRemove: true });
  proxyServer = await serveSnapshotter(proxyBacking, { address: join(dir, 'proxy.sock') });
  const config = defaultConfig();
  config.root = join(dir, 'root');
  config.state = join(dir, 'state');
  config.grpc.address = join(dir, 'berth.sock');
  config.proxyPlugins = {
    mysnap: { type: 'snapshot', address: proxyServer.address },
    // A content proxy loads without its server (the connection is lazy); unknown types are left out.
    remotecs: { type: 'content', address: join(dir, 'nobody.sock') },
    odd: { type: 'io.containerd.runtime.v2', address: join(dir, 'odd.sock') },
  };
  daemon = await startDaemon(config);
  cl = connect(daemon.address);
});

afterAll(async () => {
  for (const s of stubs) s.close();
  cl?.close();
  await daemon?.stop();
  await proxyServer?.close();
  await proxyBacking?.close();
  removeDir(dir);
});

let seq = 0;

/** Removes every snapshot of ctx's namespace, leaves first, then the namespace. */
async function emptyNamespace(sn: Snapshotter, ctx: Context): Promise<void> {
  for (;;) {
    const infos: { name: string; parent: string }[] = [];
    await sn.walk(ctx, (i) => void infos.push(i));
    if (infos.length === 0) break;
    const parents = new Set(infos.map((i) => i.parent));
    for (const i of infos) if (!parents.has(i.name)) await sn.remove(ctx, i.name);
  }
  await cl.namespaces.delete({}, ctx.namespace!).catch(() => {});
}

for (const name of ['overlayfs', 'native', 'mysnap']) {
  runSnapshotterSuite(`berthd ${name} over gRPC`, async () => {
    const ctx = { namespace: `suite-${name}-${++seq}` };
    const snapshotter = cl.snapshots(name);
    return { snapshotter, ctx, cleanup: () => emptyNamespace(snapshotter, ctx) };
  });
}

/** Unlabelled snapshots outside a lease may be collected at any time (as containerd's). */
const ROOT = { labels: { 'containerd.io/gc.root': 'test' } };

function stub(service: string): grpc.Client {
  const Ctor = grpcClientConstructor(service);
  const c = new Ctor(`unix://${daemon.address}`, grpc.credentials.createInsecure());
  stubs.push(c);
  return c;
}

function call(c: grpc.Client, method: string, req: Any, namespace?: string): Promise<Any> {
  const md = new grpc.Metadata();
  if (namespace) md.set(NAMESPACE_HEADER, namespace);
  return new Promise((resolve, reject) => {
    (c as any)[method](req, md, (err: grpc.ServiceError | null, res: Any) =>
      err ? reject(err) : resolve(res),
    );
  });
}

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as grpc.ServiceError).code, details: (e as grpc.ServiceError).details };
  }
  throw new Error('expected the call to fail');
}

function exchange(): Exchange {
  return daemon.registry.instancesOf<Exchange>(PluginType.Event)[0]!.instance;
}

async function next(sub: AsyncIterable<ExchangeEnvelope>): Promise<ExchangeEnvelope> {
  const r = await sub[Symbol.asyncIterator]().next();
  if (r.done) throw new Error('subscription ended');
  return r.value;
}

describe('snapshots service', () => {
  test('reports each snapshotter through Introspection, overlayfs with its root', async () => {
    const plugins = await cl.plugins();
    const find = (type: string, id: string) => plugins.find((p) => p.type === type && p.id === id);
    expect(find(PluginType.Snapshot, 'overlayfs')).toMatchObject({
      exports: { root: join(dir, 'root', 'io.containerd.snapshotter.v1.overlayfs') },
      platforms: [{ os: 'linux' }],
    });
    expect(find(PluginType.Snapshot, 'overlayfs')!.initErr).toBeUndefined();
    expect(find(PluginType.Snapshot, 'native')!.initErr).toBeUndefined();
    expect(find(PluginType.Snapshot, 'mysnap')).toMatchObject({ exports: { address: proxyServer.address } });
    expect(find(PluginType.Content, 'remotecs')).toMatchObject({
      exports: { address: join(dir, 'nobody.sock') },
    });
    expect(find(PluginType.Content, 'remotecs')!.initErr).toBeUndefined();
    expect(plugins.some((p) => p.id === 'odd')).toBe(false);
    // The local store stays the one the metadata store wraps.
    expect((await cl.plugins([`type==${PluginType.Metadata}`]))[0]!.initErr).toBeUndefined();
    for (const [type, id] of [
      [PluginType.Service, 'snapshots-service'],
      [PluginType.GRPC, 'snapshots'],
      [PluginType.Differ, 'walking'],
      [PluginType.Service, 'diff-service'],
      [PluginType.GRPC, 'diff'],
    ] as const) {
      expect(find(type, id)?.initErr).toBeUndefined();
      expect(find(type, id)).toBeDefined();
    }
  });

  test('picks the snapshotter by name, overlayfs when none is named, and refuses unknown ones', async () => {
    const c = stub('containerd.services.snapshots.v1.Snapshots');
    const ns = 'pick';
    const res = await call(c, 'Prepare', { snapshotter: '', key: 'k', ...ROOT }, ns);
    expect(res.mounts[0].source).toContain('io.containerd.snapshotter.v1.overlayfs');
    expect((await cl.snapshots('overlayfs').stat({ namespace: ns }, 'k')).kind).toBe('active');
    expect(await failure(call(c, 'Stat', { snapshotter: 'bogus', key: 'k' }, ns))).toEqual({
      code: GrpcCode.INVALID_ARGUMENT,
      details: 'snapshotter not loaded: bogus: invalid argument',
    });
    expect(await failure(call(c, 'Stat', { snapshotter: 'native', key: 'k' }))).toEqual({
      code: GrpcCode.FAILED_PRECONDITION,
      details: 'namespace is required: failed precondition',
    });
    await emptyNamespace(cl.snapshots('overlayfs'), { namespace: ns });
  });

  test('publishes prepare, commit and remove events in the namespace', async () => {
    const ctx = { namespace: 'events' };
    const sn = cl.snapshots('native');
    const events = exchange().subscribe(['namespace==events,topic~="^/snapshot/"']);
    try {
      await sn.prepare(ctx, 'k', '', ROOT);
      await sn.view(ctx, 'v-none', '', ROOT); // views publish nothing, as containerd
      await sn.commit(ctx, 'c', 'k', ROOT);
      await sn.remove(ctx, 'v-none');
      const got = [await next(events), await next(events), await next(events)].map((e) => [
        e.topic,
        decodeAny(e.event),
      ]);
      expect(got).toEqual([
        ['/snapshot/prepare', { key: 'k', parent: '' }],
        ['/snapshot/commit', { key: 'k', name: 'c' }],
        ['/snapshot/remove', { key: 'v-none' }],
      ]);
    } finally {
      events.close();
      await emptyNamespace(sn, ctx);
    }
  });

  test('keeps namespaces apart and refuses to delete one that still has snapshots', async () => {
    const sn = cl.snapshots('overlayfs');
    await sn.prepare({ namespace: 'ns-a' }, 'same', '', ROOT);
    await sn.prepare({ namespace: 'ns-b' }, 'same', '', ROOT);
    const mountsA = await sn.mounts({ namespace: 'ns-a' }, 'same');
    const mountsB = await sn.mounts({ namespace: 'ns-b' }, 'same');
    expect(mountsA[0]!.source).not.toBe(mountsB[0]!.source);
    await expect(cl.namespaces.delete({}, 'ns-a')).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: 'namespace "ns-a" must be empty, but it still has snapshots on "overlayfs" snapshotter',
    });
    await emptyNamespace(sn, { namespace: 'ns-a' });
    await emptyNamespace(sn, { namespace: 'ns-b' });
  });

  test('frees a removed snapshot at the next collection, and a lease keeps one alive', async () => {
    const ctx = { namespace: 'gc' };
    const sn = cl.snapshots('overlayfs');
    const snapshotsDir = join(dir, 'root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    const lease = await cl.leases.create(ctx, { id: 'keep' });
    await sn.prepare({ ...ctx, lease: lease.id }, 'leased', '');
    const [m] = await sn.prepare(ctx, 'doomed', '', ROOT);
    const doomedDir = join(m!.source, '..');
    expect(existsSync(doomedDir)).toBe(true);
    await sn.remove(ctx, 'doomed');
    // Cleanup is a collection here: it removes the backing snapshot and frees its space.
    await sn.cleanup(ctx);
    expect(existsSync(doomedDir)).toBe(false);
    expect(readdirSync(snapshotsDir).some((d) => d.startsWith('rm-'))).toBe(false);
    expect((await sn.stat(ctx, 'leased')).kind).toBe('active');
    await cl.leases.delete(ctx, lease.id, { sync: true });
    await expect(sn.stat(ctx, 'leased')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    await cl.namespaces.delete({}, 'gc');
  });

  test('collects what a proxy snapshotter holds for removed snapshots', async () => {
    const ctx = { namespace: 'proxy-gc' };
    const sn = cl.snapshots('mysnap');
    await sn.prepare(ctx, 'k', '', { labels: { 'containerd.io/gc.root': 'x' } });
    const backingKeys = async () => {
      const keys: string[] = [];
      await proxyBacking.walk({}, (i) => void keys.push(i.name));
      return keys.filter((k) => k.startsWith('proxy-gc/'));
    };
    expect(await backingKeys()).toEqual([expect.stringMatching(/^proxy-gc\/\d+\/k$/)]);
    await sn.remove(ctx, 'k');
    await sn.cleanup(ctx);
    expect(await backingKeys()).toEqual([]);
  });
});

// --- Diff service ---

const entries = (list: TarInput[]) => list.map((e) => ({ mtime: 1_700_000_000, uid: 0, gid: 0, ...e }));

async function ingest(ctx: Context, data: Buffer): Promise<string> {
  const digest = digestOf(data);
  let w: Awaited<ReturnType<typeof cl.content.writer>>;
  try {
    w = await cl.content.writer(ctx, { ref: `diff-${digest}`, desc: { digest, size: data.length } });
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_ALREADY_EXISTS') return digest;
    throw e;
  }
  try {
    const { offset } = await w.status();
    await w.write(data.subarray(offset));
    await w.commit(data.length, digest, { labels: { 'containerd.io/gc.root': 'test' } }).catch((e) => {
      if (e.code !== 'ERR_ALREADY_EXISTS') throw e;
    });
  } finally {
    await w.close();
  }
  return digest;
}

const mountMsg = (m: Mount) => ({ type: m.type, source: m.source, target: '', options: m.options });

describe('diff service', () => {
  // Unreferenced snapshots and content are collected at any time: hold them on a lease.
  const ctx = { namespace: 'diff', lease: 'diff-test' };
  beforeAll(async () => {
    await cl.leases.create(ctx, { id: 'diff-test' });
  });
  const base = gzipSync(
    buildTar(
      entries([
        { name: 'etc/', type: 'dir', mode: 0o755 },
        { name: 'etc/hostname', type: 'file', mode: 0o644, data: 'base\n' },
        { name: 'etc/gone', type: 'file', mode: 0o600, data: 'to be deleted\n' },
        { name: 'opt/', type: 'dir', mode: 0o750, uid: 7, gid: 8 },
        { name: 'opt/old', type: 'file', mode: 0o644, data: 'hidden by opaque\n' },
      ]),
    ),
  );
  const top = buildTar(
    entries([
      { name: 'etc/', type: 'dir', mode: 0o755 },
      { name: 'etc/.wh.gone', type: 'file', mode: 0o600 },
      { name: 'etc/hostname', type: 'file', mode: 0o644, data: 'top\n' },
      { name: 'opt/', type: 'dir', mode: 0o750, uid: 7, gid: 8 },
      { name: 'opt/.wh..wh..opq', type: 'file', mode: 0o600 },
      { name: 'opt/new', type: 'file', mode: 0o644, data: 'new\n' },
      { name: 'bin', type: 'symlink', mode: 0o777, linkname: 'usr/bin' },
    ]),
  );

  async function apply(snapshotter: string, key: string, parent: string, blob: Buffer, mediaType: string) {
    const digest = await ingest(ctx, blob);
    const sn = cl.snapshots(snapshotter);
    const mounts = await sn.prepare(ctx, key, parent);
    const res = await call(
      stub('containerd.services.diff.v1.Diff'),
      'Apply',
      { diff: { mediaType, digest, size: blob.length }, mounts: mounts.map(mountMsg) },
      ctx.namespace,
    );
    return { applied: res.applied, mounts };
  }

  for (const snapshotter of ['overlayfs', 'native']) {
    test(`${snapshotter}: applies gzip and plain layers with whiteouts, and diffs them back`, async () => {
      const sn = cl.snapshots(snapshotter);
      const one = await apply(snapshotter, `${snapshotter}-1`, '', base, MediaTypes.dockerLayerGzip);
      expect(one.applied).toMatchObject({
        mediaType: MediaTypes.ociLayer,
        digest: expect.stringMatching(/^sha256:/),
      });
      await sn.commit(ctx, `${snapshotter}-base`, `${snapshotter}-1`);
      const two = await apply(
        snapshotter,
        `${snapshotter}-2`,
        `${snapshotter}-base`,
        top,
        MediaTypes.ociLayer,
      );
      expect(two.applied).toEqual({
        mediaType: MediaTypes.ociLayer,
        digest: digestOf(top),
        size: top.length,
        annotations: {},
      });
      const tree = await withTempMount(two.mounts, async (root) => ({
        hostname: await readFile(join(root, 'etc/hostname'), 'utf8'),
        etc: readdirSync(join(root, 'etc')).sort(),
        opt: readdirSync(join(root, 'opt')).sort(),
        digest: (await treeDigest(root)).digest,
      }));
      expect(tree).toMatchObject({ hostname: 'top\n', etc: ['hostname'], opt: ['new'] });

      // Diff the layer back out and apply it to a fresh child of the base: the same tree.
      const diffStub = stub('containerd.services.diff.v1.Diff');
      const baseView = await sn.view(ctx, `${snapshotter}-base-view`, `${snapshotter}-base`);
      const { diff } = await call(
        diffStub,
        'Diff',
        {
          left: baseView.map(mountMsg),
          right: two.mounts.map(mountMsg),
          labels: { 'containerd.io/gc.root': 'x' },
        },
        ctx.namespace,
      );
      expect(diff.mediaType).toBe(MediaTypes.ociLayerGzip);
      const info = await cl.content.info(ctx, diff.digest);
      expect(info.labels['containerd.io/uncompressed']).toMatch(/^sha256:/);
      const again = await sn.prepare(ctx, `${snapshotter}-3`, `${snapshotter}-base`);
      const res = await call(diffStub, 'Apply', { diff, mounts: again.map(mountMsg) }, ctx.namespace);
      expect(res.applied.digest).toBe(info.labels['containerd.io/uncompressed']);
      expect(await withTempMount(again, async (root) => (await treeDigest(root)).digest)).toBe(tree.digest);
    });
  }

  test('answers containerd codes for what it cannot apply', async () => {
    const c = stub('containerd.services.diff.v1.Diff');
    const sn = cl.snapshots('native');
    const mounts = (await sn.prepare(ctx, 'errors', '')).map(mountMsg);
    const blob = await ingest(ctx, Buffer.from('{"not":"a layer"}'));
    expect(
      await failure(
        call(c, 'Apply', { diff: { mediaType: 'application/json', digest: blob, size: 17 }, mounts }, 'diff'),
      ),
    ).toEqual({
      code: GrpcCode.UNIMPLEMENTED,
      details:
        'failed to get stream processor for application/json: no processor for media-type: not implemented',
    });
    const missing = `sha256:${'0'.repeat(64)}`;
    expect(
      (
        await failure(
          call(c, 'Apply', { diff: { mediaType: MediaTypes.ociLayer, digest: missing }, mounts }, 'diff'),
        )
      ).code,
    ).toBe(GrpcCode.NOT_FOUND);
    expect(
      (
        await failure(
          call(
            c,
            'Apply',
            { diff: { mediaType: MediaTypes.ociLayer, digest: 'sha256:xyz' }, mounts },
            'diff',
          ),
        )
      ).code,
    ).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(
      (
        await failure(
          call(c, 'Apply', { diff: { mediaType: MediaTypes.ociLayer, digest: blob }, mounts: [] }, 'diff'),
        )
      ).code,
    ).toBe(GrpcCode.INVALID_ARGUMENT);
    // Garbage where a layer should be: the apply fails and says so.
    expect(
      (
        await failure(
          call(c, 'Apply', { diff: { mediaType: MediaTypes.ociLayerGzip, digest: blob }, mounts }, 'diff'),
        )
      ).code,
    ).not.toBe(GrpcCode.OK);
    expect(
      await failure(call(c, 'Diff', { left: [], right: mounts, mediaType: 'application/x-rar' }, 'diff')),
    ).toEqual({
      code: GrpcCode.UNIMPLEMENTED,
      details: 'unsupported diff media type: application/x-rar: not implemented',
    });
  });

  test('never writes outside the snapshot (a layer climbing out through a symlink)', async () => {
    const outside = join(dir, 'outside');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'victim'), 'intact');
    const evil = buildTar(
      entries([
        { name: 'escape', type: 'symlink', mode: 0o777, linkname: outside },
        { name: 'escape/victim', type: 'file', mode: 0o644, data: 'pwned' },
      ]),
    );
    const { mounts } = await apply('overlayfs', 'evil', '', evil, MediaTypes.ociLayer);
    expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('intact');
    await withTempMount(mounts, async (root) => {
      expect(await readFile(join(root, outside, 'victim'), 'utf8')).toBe('pwned');
    });
  });
});
