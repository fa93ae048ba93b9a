/**
 * The same layer blobs applied by berthd's Diff service and by containerd's give identical
 * trees: both daemons get the same content, snapshots are prepared the same way, and each
 * daemon's Diff.Apply (through one grpc-js client built from @berth/api's protos) unpacks
 * the layers. The trees are compared with treeDigest (paths, types, modes, owners, xattrs,
 * contents, link targets, devices, hard-link groups, mtimes), through a read-only view and,
 * for overlayfs, in the raw upper directory (overlay whiteouts and opaque markers).
 * Needs root.
 */
import { gzipSync } from 'node:zlib';
import { digestOf, grpcClientConstructor, type Mount, NAMESPACE_HEADER } from '@berth/api';
import { type Client, connect } from '@berth/client';
import { buildTar, MediaTypes, type TarInput, treeDigest } from '@berth/images';
import { withTempMount } from '@berth/sys';
import { containerdInstalled, type Daemon, startBerthd, startContainerd } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

const NS = 'diff-e2e';
const T = 1_600_000_000;
const e = (x: TarInput): TarInput => ({ uid: 0, gid: 0, mtime: T, ...x });
// security.capability v2 with cap_net_bind_service, bytes >= 0x80 included.
const CAP = Buffer.from('0000000200040000000000000000000000000000', 'hex');

const BASE: TarInput[] = [
  e({ name: 'bin/', type: 'dir', mode: 0o755 }),
  e({
    name: 'bin/tool',
    type: 'file',
    mode: 0o755,
    data: '#!/bin/sh\necho tool\n',
    xattrs: { 'security.capability': CAP },
  }),
  e({ name: 'bin/sudo-like', type: 'file', mode: 0o4755, data: 'setuid\n' }),
  e({ name: 'bin/hard', type: 'link', mode: 0o755, linkname: 'bin/tool' }),
  e({ name: 'etc/', type: 'dir', mode: 0o755, mtime: T + 5 }),
  e({
    name: 'etc/config',
    type: 'file',
    mode: 0o640,
    uid: 1000,
    gid: 1000,
    data: 'a=1\n',
    xattrs: { 'user.note': 'kept' },
  }),
  e({ name: 'etc/remove-me', type: 'file', mode: 0o644, data: 'bye\n' }),
  e({ name: 'etc/link', type: 'symlink', mode: 0o777, linkname: '../bin/tool' }),
  e({ name: 'var/', type: 'dir', mode: 0o1777 }),
  e({ name: 'var/cache/', type: 'dir', mode: 0o700, uid: 33, gid: 33 }),
  e({ name: 'var/cache/old-1', type: 'file', mode: 0o600, uid: 33, gid: 33, data: 'x'.repeat(10_000) }),
  e({ name: 'var/cache/old-2', type: 'file', mode: 0o600, data: '' }),
  e({ name: 'dev/', type: 'dir', mode: 0o755 }),
  e({ name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 }),
  e({ name: 'dev/loop9', type: 'block', mode: 0o660, devmajor: 7, devminor: 9 }),
  e({ name: 'dev/pipe', type: 'fifo', mode: 0o644 }),
  e({ name: `deep/${'d/'.repeat(30)}`, type: 'dir', mode: 0o755 }),
  e({ name: `deep/${'d/'.repeat(30)}${'n'.repeat(200)}`, type: 'file', mode: 0o644, data: 'long name\n' }),
];

const TOP: TarInput[] = [
  e({ name: 'etc/', type: 'dir', mode: 0o750, mtime: T + 100 }),
  e({ name: 'etc/.wh.remove-me', type: 'file', mode: 0o644 }),
  e({ name: 'etc/config', type: 'file', mode: 0o600, uid: 1000, gid: 1000, data: 'a=2\n' }),
  e({ name: 'var/cache/', type: 'dir', mode: 0o700, uid: 33, gid: 33 }),
  e({ name: 'var/cache/.wh..wh..opq', type: 'file', mode: 0o600 }),
  e({ name: 'var/cache/new', type: 'file', mode: 0o600, data: 'fresh\n' }),
  e({ name: 'bin/tool', type: 'file', mode: 0o755, data: '#!/bin/sh\necho tool v2\n' }),
  e({ name: 'new-dir/sub/', type: 'dir', mode: 0o711, mtime: T + 7 }),
  e({ name: 'new-dir/sub/file', type: 'file', mode: 0o444, data: 'nested\n' }),
];

interface Side {
  daemon: Daemon;
  client: Client;
  diff: grpc.Client;
}

const describeIf = containerdInstalled() ? describe : describe.skip;

describeIf('a layer applied by berthd and by containerd', () => {
  let berthd: Side;
  let containerd: Side;
  const layers = {
    base: gzipSync(buildTar(BASE)),
    top: buildTar(TOP),
  };

  const side = (daemon: Daemon): Side => {
    const Ctor = grpcClientConstructor('containerd.services.diff.v1.Diff');
    return {
      daemon,
      client: connect(daemon.address),
      diff: new Ctor(`unix://${daemon.address}`, grpc.credentials.createInsecure()),
    };
  };

  beforeAll(async () => {
    const [b, c] = await Promise.all([startBerthd(), startContainerd()]);
    berthd = side(b);
    containerd = side(c);
    // The same content in each, under a lease so nothing is collected meanwhile.
    for (const s of [berthd, containerd]) {
      await s.client.leases.create({ namespace: NS }, { id: 'diff-e2e' });
      for (const blob of Object.values(layers)) {
        const digest = digestOf(blob);
        const w = await s.client.content.writer(
          { namespace: NS, lease: 'diff-e2e' },
          { ref: digest, desc: { digest, size: blob.length } },
        );
        await w.write(blob);
        await w.commit(blob.length, digest);
        await w.close();
      }
    }
  });

  afterAll(async () => {
    for (const s of [berthd, containerd]) {
      s?.diff.close();
      s?.client.close();
    }
    await Promise.all([berthd?.daemon.dispose(), containerd?.daemon.dispose()]);
  });

  function apply(
    s: Side,
    blob: Buffer,
    mediaType: string,
    mounts: Mount[],
  ): Promise<{ digest: string; size: number }> {
    const md = new grpc.Metadata();
    md.set(NAMESPACE_HEADER, NS);
    const req = {
      diff: { mediaType, digest: digestOf(blob), size: blob.length },
      mounts: mounts.map((m) => ({ type: m.type, source: m.source, options: m.options })),
    };
    return new Promise((resolve, reject) => {
      (s.diff as any).Apply(req, md, (err: grpc.ServiceError | null, res: any) =>
        err ? reject(new Error(`${s.daemon.address}: ${err.details}`)) : resolve(res.applied),
      );
    });
  }

  /** base then top on `snapshotter`: the applied descriptors, the upper dir of top, and a view's tree. */
  async function unpack(s: Side, snapshotter: string) {
    const sn = s.client.snapshots(snapshotter);
    const ctx = { namespace: NS, lease: 'diff-e2e' };
    const applied = [];
    const m1 = await sn.prepare(ctx, `${snapshotter}-base-x`, '');
    applied.push(await apply(s, layers.base, MediaTypes.ociLayerGzip, m1));
    await sn.commit(ctx, `${snapshotter}-base`, `${snapshotter}-base-x`);
    const m2 = await sn.prepare(ctx, `${snapshotter}-top-x`, `${snapshotter}-base`);
    applied.push(await apply(s, layers.top, MediaTypes.dockerLayer, m2));
    const upper = m2[0]!.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
    const upperTree = upper ? await treeDigest(upper, { mtimes: true }) : undefined;
    await sn.commit(ctx, `${snapshotter}-top`, `${snapshotter}-top-x`);
    const view = await sn.view(ctx, `${snapshotter}-look`, `${snapshotter}-top`);
    const tree = await withTempMount(view, (root) => treeDigest(root, { mtimes: true }));
    return { applied, upperTree, tree };
  }

  /**
   * Times the layer does not give (implicit parent directories, directories changed after
   * their entry) are the time of the apply on either side: keep only that they are recent.
   */
  const masked = (entries: string[]) =>
    entries.map((l) =>
      l.replace(/ mtime=(\d+)\.\d+$/, (m, s) => (Number(s) > T + 86_400 ? ' mtime=<apply time>' : m)),
    );

  for (const snapshotter of ['overlayfs', 'native']) {
    test(`${snapshotter}: identical trees, diffIDs and sizes`, async () => {
      const [ours, theirs] = await Promise.all([
        unpack(berthd, snapshotter),
        unpack(containerd, snapshotter),
      ]);
      expect(ours.applied).toEqual(theirs.applied);
      expect(ours.applied[1]!.digest).toBe(digestOf(layers.top));
      if (snapshotter === 'native') {
        // containerd's native copy of the parent (continuity's CopyDir) sets a directory's
        // times before copying its children, so non-empty directories get the copy time;
        // berth's copy keeps the parent's times. Everything else, file times included, agrees.
        const noDirTimes = (entries: string[]) =>
          entries.map((l) => (/ dir /.test(l) ? l.replace(/ mtime=.*$/, '') : l));
        expect(noDirTimes(ours.tree.entries)).toEqual(noDirTimes(theirs.tree.entries));
      } else {
        expect(masked(ours.tree.entries)).toEqual(masked(theirs.tree.entries));
      }
      if (snapshotter === 'overlayfs') {
        expect(masked(ours.upperTree!.entries)).toEqual(masked(theirs.upperTree!.entries));
        // The whiteout and the opaque directory are there, as overlay expects them.
        expect(ours.upperTree!.entries.join('\n')).toMatch(/etc\/remove-me char/);
      }
    });
  }
});
