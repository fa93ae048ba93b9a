import { randomBytes } from 'node:crypto';
import { type Context, decodeAny, digestOf, type Envelope, SPEC_TYPE_URL } from '@berth/api';
import { type Client, connect } from '@berth/client';
import { containerdInstalled, type Daemon, startBerthd, startContainerd } from '@berth/testkit';

// The image, container and event clients against berthd and Debian's containerd: the same
// calls must give the same answers from both.
const haveContainerd = containerdInstalled() && process.getuid?.() === 0;
const daemons: [string, () => Promise<Daemon>][] = [['berthd', () => startBerthd()]];
if (haveContainerd) daemons.push(['containerd', () => startContainerd()]);

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function caught(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code?: string }).code, message: String((e as Error).message) };
  }
  throw new Error('expected the call to fail');
}

/** Reads envelopes from a subscription into a queue; next() waits for one (or for timeoutMs). */
function listen(client: Client, filters: string[]) {
  const controller = new AbortController();
  const queue: Envelope[] = [];
  let waiter: (() => void) | undefined;
  const done = (async () => {
    try {
      for await (const env of client.events.subscribe({ signal: controller.signal }, filters)) {
        queue.push(env);
        waiter?.();
      }
    } catch {
      // cancelled
    }
  })();
  const next = async (timeoutMs = 10_000): Promise<Envelope | undefined> => {
    if (queue.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      waiter = undefined;
    }
    return queue.shift();
  };
  return {
    next,
    async event(): Promise<Envelope> {
      const e = await next();
      if (!e) throw new Error('no event within 10 s');
      return e;
    },
    /** Publishes probes until one arrives (a subscription registers asynchronously), then drains. */
    async ready(ctx: Context): Promise<void> {
      for (let i = 0; !(await next(0)); i++) {
        if (i > 100) throw new Error('subscription never started');
        await client.events.publish(ctx, '/test/ready', {
          typeUrl: 'containerd.events.ContainerDelete',
          value: Buffer.alloc(0),
        });
        if (await next(100)) break;
      }
      while (await next(200));
    },
    async close() {
      controller.abort();
      await done;
    },
  };
}

describe.each(daemons)('image, container and event clients against %s', (_name, start) => {
  let daemon: Daemon;
  let client: Client;
  let ctx: Context;

  beforeAll(async () => {
    daemon = await start();
    client = connect(daemon.address);
  });
  afterAll(async () => {
    client?.close();
    await daemon?.dispose();
  });
  beforeEach(() => {
    ctx = { namespace: `t-${randomBytes(4).toString('hex')}` };
  });

  test('images: create, get, list with filters, update by field path, delete, with events', async () => {
    const events = listen(client, [`namespace==${ctx.namespace}`]);
    try {
      await events.ready(ctx);

      const d1 = digestOf('m1');
      const created = await client.images.create(ctx, {
        name: 'example.com/app:1',
        labels: { team: 'core' },
        target: { mediaType: MANIFEST, digest: d1, size: 42, annotations: { note: 'n' } },
      });
      expect(created).toMatchObject({
        name: 'example.com/app:1',
        labels: { team: 'core' },
        target: { mediaType: MANIFEST, digest: d1, size: 42, annotations: { note: 'n' } },
      });
      const ev = await events.event();
      expect([ev.topic, ev.namespace, ev.event.typeUrl]).toEqual([
        '/images/create',
        ctx.namespace,
        'containerd.services.images.v1.ImageCreate',
      ]);
      expect(decodeAny(ev.event)).toEqual({ name: 'example.com/app:1', labels: { team: 'core' } });

      await client.images.create(ctx, {
        name: 'example.com/app:2',
        labels: {},
        target: { mediaType: MANIFEST, digest: digestOf('m2'), size: 7 },
      });
      await events.event();
      expect((await client.images.list(ctx)).map((i) => i.name)).toEqual([
        'example.com/app:1',
        'example.com/app:2',
      ]);
      expect((await client.images.list(ctx, [`target.digest==${d1}`])).map((i) => i.name)).toEqual([
        'example.com/app:1',
      ]);
      expect((await client.images.list(ctx, ['labels.team'])).map((i) => i.name)).toEqual([
        'example.com/app:1',
      ]);
      expect(await client.images.get(ctx, 'example.com/app:1')).toEqual(created);

      const updated = await client.images.update(
        ctx,
        { name: 'example.com/app:1', labels: { extra: 'x', team: '' }, target: created.target },
        ['labels.extra', 'labels.team'],
      );
      expect(updated.labels).toEqual({ extra: 'x' });
      const up = await events.event();
      expect([up.topic, decodeAny(up.event)]).toEqual([
        '/images/update',
        { name: 'example.com/app:1', labels: { extra: 'x' } },
      ]);

      expect(
        await caught(client.images.update(ctx, { ...created, name: 'example.com/app:1' }, ['bogus'])),
      ).toMatchObject({
        code: 'ERR_INVALID_ARGUMENT',
      });
      expect(await caught(client.images.create(ctx, { ...created }))).toMatchObject({
        code: 'ERR_ALREADY_EXISTS',
      });
      expect(await caught(client.images.get(ctx, 'nope'))).toMatchObject({ code: 'ERR_NOT_FOUND' });

      await client.images.delete(ctx, 'example.com/app:1', { sync: true });
      const del = await events.event();
      expect([del.topic, decodeAny(del.event)]).toEqual(['/images/delete', { name: 'example.com/app:1' }]);
      expect(await caught(client.images.delete(ctx, 'example.com/app:1'))).toMatchObject({
        code: 'ERR_NOT_FOUND',
      });
      await client.images.delete(ctx, 'example.com/app:2');
      await events.event();
    } finally {
      await events.close();
    }
  });

  test('containers: create, get, list, update, delete, and the errors containerd gives', async () => {
    const spec = { typeUrl: SPEC_TYPE_URL, value: Buffer.from('{"ociVersion":"1.0.2-dev"}') };
    const created = await client.containers.create(ctx, {
      id: 'c1',
      labels: { app: 'web' },
      image: 'example.com/app:1',
      runtime: { name: 'io.containerd.runc.v2' },
      spec,
      snapshotter: 'overlayfs',
      snapshotKey: 'c1',
      extensions: { ext: { typeUrl: 'x.Y', value: Buffer.from([1]) } },
      sandbox: '',
    });
    expect(created).toMatchObject({
      id: 'c1',
      labels: { app: 'web' },
      runtime: { name: 'io.containerd.runc.v2' },
    });
    expect(created.spec).toEqual(spec);
    expect(created.extensions.ext).toEqual({ typeUrl: 'x.Y', value: Buffer.from([1]) });
    expect(await client.containers.get(ctx, 'c1')).toEqual(created);
    expect((await client.containers.list(ctx, ['labels.app==web'])).map((c) => c.id)).toEqual(['c1']);
    expect((await client.containers.list(ctx, ['runtime.name==other'])).map((c) => c.id)).toEqual([]);

    const updated = await client.containers.update(
      ctx,
      { ...created, labels: { app: 'db' }, image: 'other' },
      ['labels.app'],
    );
    expect(updated.labels).toEqual({ app: 'db' });
    expect(updated.image).toBe('example.com/app:1');

    expect(await caught(client.containers.update(ctx, { ...created, snapshotter: 'native' }))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    expect(
      await caught(client.containers.create(ctx, { ...created, id: 'c2', spec: undefined })),
    ).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    expect(await caught(client.containers.create(ctx, { ...created, id: 'bad id' }))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    expect(await caught(client.containers.create(ctx, created))).toMatchObject({
      code: 'ERR_ALREADY_EXISTS',
    });
    expect(await caught(client.namespaces.delete({}, ctx.namespace!))).toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: expect.stringContaining(
        `namespace "${ctx.namespace}" must be empty, but it still has containers`,
      ),
    });
    await client.containers.delete(ctx, 'c1');
    expect(await caught(client.containers.get(ctx, 'c1'))).toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(await caught(client.containers.delete(ctx, 'c1'))).toMatchObject({ code: 'ERR_NOT_FOUND' });
    await client.namespaces.delete({}, ctx.namespace!);
  });
});
