/**
 * berthd in-process: times travel from the clock through the stores to the wire with their
 * nanoseconds (containerd's clients compare them with nanosecond clocks). The daemon runs
 * in this process, so its clock is the test's: created and updated times must lie strictly
 * between two nowNanos() taken around the call, and read back exactly.
 */
import { join } from 'node:path';
import {
  type Context,
  digestOf,
  fromTimestamp,
  grpcClientConstructor,
  NAMESPACE_HEADER,
  nowNanos,
  toNanos,
} from '@berth/api';
import { type Client, connect } from '@berth/client';
import { type Daemon, defaultConfig, startDaemon } from '@berth/daemon';
import { makeTempDir, removeDir } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

let dir: string;
let daemon: Daemon;
let cl: Client;
const ctx: Context = { namespace: 'times' };

beforeAll(async () => {
  dir = makeTempDir('berthd-times-');
  const config = defaultConfig();
  config.root = join(dir, 'root');
  config.state = join(dir, 'state');
  config.grpc.address = join(dir, 'run', 'berth.sock');
  daemon = await startDaemon(config);
  cl = connect(daemon.address);
  const lease = await cl.leases.create(ctx, {});
  ctx.lease = lease.id;
});

afterAll(async () => {
  cl?.close();
  await daemon?.stop();
  removeDir(dir);
});

function expectBetween(t: Date, pre: bigint, post: bigint): void {
  const n = toNanos(t);
  expect(n > pre && n < post).toBe(true);
}

/** Info as the wire carries it: {seconds, nanos} straight from a grpc-js client. */
function rawInfo(digest: string): Promise<{ createdAt: any; updatedAt: any }> {
  const Ctor = grpcClientConstructor('containerd.services.content.v1.Content');
  const c = new Ctor(`unix://${daemon.address}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set(NAMESPACE_HEADER, ctx.namespace!);
  return new Promise((resolve, reject) => {
    (c as any).Info({ digest }, md, (err: Error | null, res: any) => {
      c.close();
      err ? reject(err) : resolve(res.info);
    });
  });
}

describe('times over the wire keep nanoseconds', () => {
  it('content: ingest status, commit and label update', async () => {
    const data = Buffer.from('nanosecond content');
    const digest = digestOf(data);
    const pre = nowNanos();
    const w = await cl.content.writer(ctx, { ref: 'times-1', desc: { size: data.length, digest } });
    const started = nowNanos();
    const st0 = await w.status();
    expectBetween(st0.startedAt, pre, started);
    await w.write(data);
    const written = nowNanos();
    const st1 = await w.status();
    expectBetween(st1.updatedAt, started, written);
    await w.commit(data.length, digest);
    const committed = nowNanos();
    await w.close();

    const info = await cl.content.info(ctx, digest);
    expectBetween(info.createdAt, written, committed);
    const updated = await cl.content.update(ctx, { digest, labels: { a: 'b' } }, ['labels.a']);
    const after = nowNanos();
    expectBetween(updated.updatedAt, committed, after);
    const again = await cl.content.info(ctx, digest);
    expect([toNanos(again.createdAt), toNanos(again.updatedAt)]).toEqual([
      toNanos(info.createdAt),
      toNanos(updated.updatedAt),
    ]);
    const raw = await rawInfo(digest);
    expect(toNanos(fromTimestamp(raw.updatedAt))).toBe(toNanos(updated.updatedAt));
    expect(raw.updatedAt.nanos).toBe(Number(toNanos(updated.updatedAt) % 1_000_000_000n));
  });

  it('leases, images and snapshots', async () => {
    const pre = nowNanos();
    const lease = await cl.leases.create(ctx, { id: 'times-lease' });
    const mid = nowNanos();
    expectBetween(lease.createdAt, pre, mid);
    const listed = (await cl.leases.list(ctx)).find((l) => l.id === 'times-lease')!;
    expect(toNanos(listed.createdAt)).toBe(toNanos(lease.createdAt));

    const target = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: digestOf('m'),
      size: 1,
    };
    const image = await cl.images.create(ctx, { name: 'times/img', labels: {}, target });
    const made = nowNanos();
    expectBetween(image.createdAt, mid, made);
    const image2 = await cl.images.update(ctx, { name: 'times/img', labels: { x: 'y' }, target }, ['labels']);
    expectBetween(image2.updatedAt, made, nowNanos());
    expect(toNanos((await cl.images.get(ctx, 'times/img')).updatedAt)).toBe(toNanos(image2.updatedAt));

    const sn = cl.snapshots('native');
    const before = nowNanos();
    await sn.prepare(ctx, 'times-active', '');
    const prepared = nowNanos();
    const st = await sn.stat(ctx, 'times-active');
    expectBetween(st.createdAt, before, prepared);
    const up = await sn.update(ctx, { ...st, labels: { x: 'y' } }, ['labels.x']);
    expectBetween(up.updatedAt, prepared, nowNanos());
    expect(toNanos((await sn.stat(ctx, 'times-active')).updatedAt)).toBe(toNanos(up.updatedAt));
  });
});
