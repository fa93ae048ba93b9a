/**
 * berthd in-process: the Images, Containers and Events services through plain grpc-js
 * clients, with the events every mutation publishes, error codes, and garbage collection
 * of an image's content.
 */
import { join } from 'node:path';
import {
  decodeAny,
  digestOf,
  encodeAny,
  GrpcCode,
  grpcClientConstructor,
  NAMESPACE_HEADER,
  PluginType,
  SPEC_TYPE_URL,
} from '@berth/api';
import { connect } from '@berth/client';
import { type Daemon, defaultConfig, type Exchange, startDaemon } from '@berth/daemon';
import { makeTempDir, removeDir } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

type Any = Record<string, any>;

let dir: string;
let daemon: Daemon;
const clients: grpc.Client[] = [];

function client(service: string): grpc.Client {
  const Ctor = grpcClientConstructor(`containerd.services.${service}`);
  const c = new Ctor(`unix://${daemon.address}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

function md(namespace?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (namespace) m.set(NAMESPACE_HEADER, namespace);
  return m;
}

function call(c: grpc.Client, method: string, req: Any, meta = md()): Promise<Any> {
  return new Promise((resolve, reject) => {
    (c as any)[method](req, meta, (err: grpc.ServiceError | null, res: Any) =>
      err ? reject(err) : resolve(res),
    );
  });
}

function collect(c: grpc.Client, method: string, req: Any, meta = md()): Promise<Any[]> {
  return new Promise((resolve, reject) => {
    const out: Any[] = [];
    const s = (c as any)[method](req, meta) as grpc.ClientReadableStream<Any>;
    s.on('data', (m: Any) => out.push(m));
    s.on('error', reject);
    s.on('end', () => resolve(out));
  });
}

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error('expected the call to fail');
}

/** An Events.Subscribe stream read one envelope at a time. */
class Subscription {
  private readonly queue: Any[] = [];
  private waiters: { resolve: (m: Any) => void; reject: (e: Error) => void }[] = [];
  private error: Error | undefined;
  readonly stream: grpc.ClientReadableStream<Any>;

  constructor(filters: string[]) {
    this.stream = (client('events.v1.Events') as any).Subscribe({ filters }, md());
    this.stream.on('data', (m: Any) => {
      const w = this.waiters.shift();
      if (w) w.resolve(m);
      else this.queue.push(m);
    });
    this.stream.on('error', (e: Error) => {
      this.error = e;
      for (const w of this.waiters.splice(0)) w.reject(e);
    });
  }

  next(): Promise<Any> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The next envelope as {topic, namespace, event: decoded}. */
  async nextEvent(): Promise<{ topic: string; namespace: string; typeUrl: string; event: Any }> {
    const env = await this.next();
    return {
      topic: env.topic,
      namespace: env.namespace,
      typeUrl: env.event.typeUrl,
      event: decodeAny(env.event),
    };
  }

  cancel(): void {
    this.stream.cancel();
  }
}

const subs: Subscription[] = [];
function subscribe(...filters: string[]): Subscription {
  const s = new Subscription(filters);
  subs.push(s);
  return s;
}

const exchange = (): Exchange => daemon.registry.instancesOf<Exchange>(PluginType.Event)[0]!.instance;

/** The daemon's own subscribers (the CRI plugin watches /tasks/oom), there before any test's. */
let baseline = 0;

/** Resolves once the exchange has `n` subscribers of the tests (a gRPC subscription registers asynchronously). */
async function subscribers(n: number): Promise<void> {
  for (let i = 0; i < 500 && exchange().subscriberCount !== baseline + n; i++)
    await new Promise((r) => setTimeout(r, 10));
  expect(exchange().subscriberCount - baseline).toBe(n);
}

beforeAll(async () => {
  dir = makeTempDir('berthd-records-');
  const config = defaultConfig();
  config.root = join(dir, 'root');
  config.state = join(dir, 'state');
  config.grpc.address = join(dir, 'run', 'berth.sock');
  daemon = await startDaemon(config);
  baseline = exchange().subscriberCount;
});

afterEach(async () => {
  for (const s of subs.splice(0)) s.cancel();
  await subscribers(0);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await daemon?.stop();
  removeDir(dir);
});

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

describe('plugins', () => {
  test('images, containers and events are loaded', async () => {
    const { plugins } = await call(client('introspection.v1.Introspection'), 'Plugins', { filters: [] });
    const ids = plugins.filter((p: Any) => p.initErr == null).map((p: Any) => `${p.type}.${p.id}`);
    expect(ids).toEqual(
      expect.arrayContaining([
        'io.containerd.service.v1.images-service',
        'io.containerd.service.v1.containers-service',
        'io.containerd.grpc.v1.images',
        'io.containerd.grpc.v1.containers',
        'io.containerd.grpc.v1.events',
      ]),
    );
  });
});

describe('Images', () => {
  const NS = 'img-ns';
  const target = (digest: string, size = 10) => ({ mediaType: MANIFEST, digest, size, annotations: {} });

  test('create, get, list, update, delete, each with its containerd event', async () => {
    const c = client('images.v1.Images');
    const events = subscribe(`namespace==${NS}`);
    await subscribers(1);
    const d = digestOf('manifest');
    const created = await call(
      c,
      'Create',
      { image: { name: 'docker.io/x/y:1', labels: { a: '1' }, target: target(d) } },
      md(NS),
    );
    expect(created.image).toMatchObject({ name: 'docker.io/x/y:1', labels: { a: '1' }, target: target(d) });
    expect(created.image.createdAt.seconds).toBeGreaterThan(0);
    expect(await events.nextEvent()).toEqual({
      topic: '/images/create',
      namespace: NS,
      typeUrl: 'containerd.services.images.v1.ImageCreate',
      event: { name: 'docker.io/x/y:1', labels: { a: '1' } },
    });

    expect((await call(c, 'Get', { name: 'docker.io/x/y:1' }, md(NS))).image).toEqual(created.image);
    await call(
      c,
      'Create',
      { image: { name: 'docker.io/x/z:1', labels: {}, target: target(d, 20) } },
      md(NS),
    );
    await events.next();
    const all = await call(c, 'List', { filters: [] }, md(NS));
    expect(all.images.map((i: Any) => i.name)).toEqual(['docker.io/x/y:1', 'docker.io/x/z:1']);
    const some = await call(c, 'List', { filters: ['labels.a==1'] }, md(NS));
    expect(some.images.map((i: Any) => i.name)).toEqual(['docker.io/x/y:1']);

    const updated = await call(
      c,
      'Update',
      {
        image: { name: 'docker.io/x/y:1', labels: { b: '2' }, target: null },
        updateMask: ['labels.b'],
      },
      md(NS),
    );
    expect(updated.image.labels).toEqual({ a: '1', b: '2' });
    expect(updated.image.target).toEqual(target(d));
    expect(await events.nextEvent()).toMatchObject({
      topic: '/images/update',
      event: { name: 'docker.io/x/y:1', labels: { a: '1', b: '2' } },
    });

    await call(c, 'Delete', { name: 'docker.io/x/y:1', sync: false }, md(NS));
    expect(await events.nextEvent()).toMatchObject({
      topic: '/images/delete',
      typeUrl: 'containerd.services.images.v1.ImageDelete',
      event: { name: 'docker.io/x/y:1' },
    });
    const left = await call(c, 'List', { filters: [] }, md(NS));
    expect(left.images.map((i: Any) => i.name)).toEqual(['docker.io/x/z:1']);
  });

  test('answers containerd codes for bad input, missing and duplicate images', async () => {
    const c = client('images.v1.Images');
    const d = digestOf('x');
    await call(c, 'Create', { image: { name: 'dup', labels: {}, target: target(d) } }, md(NS));
    expect(
      await failure(call(c, 'Create', { image: { name: 'dup', labels: {}, target: target(d) } }, md(NS))),
    ).toEqual({
      code: GrpcCode.ALREADY_EXISTS,
      details: 'image "dup": already exists',
    });
    expect(await failure(call(c, 'Get', { name: 'ghost' }, md(NS)))).toEqual({
      code: GrpcCode.NOT_FOUND,
      details: 'image "ghost": not found',
    });
    expect((await failure(call(c, 'Delete', { name: 'ghost' }, md(NS)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await failure(call(c, 'Create', { image: { name: '', target: target(d) } }, md(NS)))).code).toBe(
      GrpcCode.INVALID_ARGUMENT,
    );
    const bad = await failure(
      call(c, 'Create', { image: { name: 'bad', target: target('sha256:nothex') } }, md(NS)),
    );
    expect(bad.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(bad.details).toContain('target digest "sha256:nothex" invalid');
    expect((await failure(call(c, 'Create', { image: { name: 'no-target' } }, md(NS)))).code).toBe(
      GrpcCode.INVALID_ARGUMENT,
    );
    const path = await failure(
      call(c, 'Update', { image: { name: 'dup', target: target(d) }, updateMask: ['size'] }, md(NS)),
    );
    expect(path).toEqual({
      code: GrpcCode.INVALID_ARGUMENT,
      details: 'cannot update "size" field on image "dup"',
    });
    expect((await failure(call(c, 'List', { filters: [] }))).code).toBe(GrpcCode.FAILED_PRECONDITION);
    const ns = await failure(call(client('namespaces.v1.Namespaces'), 'Delete', { name: NS }));
    expect(ns.code).toBe(GrpcCode.FAILED_PRECONDITION);
    expect(ns.details).toMatch(/^namespace "img-ns" must be empty, but it still has images/);
  });

  test('a synchronous delete returns after the image content is collected', async () => {
    const api = connect(daemon.address);
    try {
      const ctx = { namespace: 'img-gc' };
      const data = Buffer.from('{"schemaVersion":2}');
      const d = digestOf(data);
      const w = await api.content.writer(ctx, { ref: 'img-gc', desc: { digest: d, size: data.length } });
      await w.write(data);
      await w.commit(data.length, d);
      await w.close();
      const c = client('images.v1.Images');
      await call(
        c,
        'Create',
        { image: { name: 'gc/me:1', target: { mediaType: MANIFEST, digest: d, size: data.length } } },
        md('img-gc'),
      );
      // The image roots its target: a collection keeps it.
      await daemon.registry
        .instancesOf<{ scheduleAndWait(): Promise<unknown> }>(PluginType.GC)[0]!
        .instance.scheduleAndWait();
      expect((await api.content.info(ctx, d)).size).toBe(data.length);
      await call(c, 'Delete', { name: 'gc/me:1', sync: true }, md('img-gc'));
      await expect(api.content.info(ctx, d)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    } finally {
      api.close();
    }
  });
});

describe('Containers', () => {
  const NS = 'ctr-ns';
  const spec = () => encodeAny('google.protobuf.Empty', {}, SPEC_TYPE_URL);
  const container = (id: string, more: Any = {}) => ({
    id,
    labels: {},
    image: 'docker.io/library/busybox:latest',
    runtime: { name: 'io.containerd.runc.v2', options: null },
    spec: { typeUrl: SPEC_TYPE_URL, value: Buffer.from('{"ociVersion":"1.0.2"}') },
    snapshotter: 'overlayfs',
    snapshotKey: id,
    extensions: {},
    sandbox: '',
    ...more,
  });

  test('create, get, list, stream, update, delete, each with its containerd event', async () => {
    const c = client('containers.v1.Containers');
    const events = subscribe(`namespace==${NS}`, 'topic~=^/nothing');
    await subscribers(1);
    const opts = { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from([8, 1]) };
    const created = await call(
      c,
      'Create',
      {
        container: container('c1', {
          labels: { app: 'web' },
          runtime: { name: 'io.containerd.runc.v2', options: opts },
        }),
      },
      md(NS),
    );
    expect(created.container).toMatchObject({
      id: 'c1',
      labels: { app: 'web' },
      snapshotKey: 'c1',
      runtime: { options: opts },
    });
    expect(created.container.spec.value.toString()).toBe('{"ociVersion":"1.0.2"}');
    expect(await events.nextEvent()).toEqual({
      topic: '/containers/create',
      namespace: NS,
      typeUrl: 'containerd.events.ContainerCreate',
      event: {
        id: 'c1',
        image: 'docker.io/library/busybox:latest',
        runtime: { name: 'io.containerd.runc.v2', options: opts },
      },
    });
    await call(c, 'Create', { container: container('c2', { spec: spec() }) }, md(NS));
    await events.next();

    expect((await call(c, 'Get', { id: 'c1' }, md(NS))).container).toEqual(created.container);
    expect(
      (await call(c, 'List', { filters: ['labels.app==web'] }, md(NS))).containers.map((x: Any) => x.id),
    ).toEqual(['c1']);
    const streamed = await collect(c, 'ListStream', { filters: [] }, md(NS));
    expect(streamed.map((m) => m.container.id)).toEqual(['c1', 'c2']);

    const updated = await call(
      c,
      'Update',
      { container: { id: 'c1', labels: { app: 'db', extra: 'x' } }, updateMask: ['labels.app'] },
      md(NS),
    );
    expect(updated.container.labels).toEqual({ app: 'db' });
    expect(await events.nextEvent()).toEqual({
      topic: '/containers/update',
      namespace: NS,
      typeUrl: 'containerd.events.ContainerUpdate',
      event: {
        id: 'c1',
        image: 'docker.io/library/busybox:latest',
        labels: { app: 'db' },
        snapshotKey: 'c1',
      },
    });

    await call(c, 'Delete', { id: 'c1' }, md(NS));
    expect(await events.nextEvent()).toMatchObject({ topic: '/containers/delete', event: { id: 'c1' } });
    expect((await call(c, 'List', { filters: [] }, md(NS))).containers.map((x: Any) => x.id)).toEqual(['c2']);
  });

  test('refuses what containerd refuses', async () => {
    const c = client('containers.v1.Containers');
    const noSpec = await failure(
      call(c, 'Create', { container: container('nospec', { spec: null }) }, md(NS)),
    );
    expect(noSpec).toEqual({
      code: GrpcCode.INVALID_ARGUMENT,
      details: 'container "nospec": spec must be set',
    });
    const noRuntime = await failure(
      call(c, 'Create', { container: container('nort', { runtime: null }) }, md(NS)),
    );
    expect(noRuntime.code).toBe(GrpcCode.INVALID_ARGUMENT);
    const badId = await failure(call(c, 'Create', { container: container('bad/id') }, md(NS)));
    expect(badId.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(badId.details).toContain('identifier "bad/id" must match');
    await call(c, 'Create', { container: container('fixed') }, md(NS));
    expect((await failure(call(c, 'Create', { container: container('fixed') }, md(NS)))).code).toBe(
      GrpcCode.ALREADY_EXISTS,
    );
    const immutable = await failure(
      call(c, 'Update', { container: container('fixed', { snapshotter: 'native' }) }, md(NS)),
    );
    expect(immutable.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(immutable.details).toContain('snapshotter is immutable');
    expect((await failure(call(c, 'Get', { id: 'ghost' }, md(NS)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await failure(call(c, 'Delete', { id: 'ghost' }, md(NS)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await failure(call(c, 'Get', { id: 'fixed' }))).code).toBe(GrpcCode.FAILED_PRECONDITION);
  });
});

describe('Events', () => {
  const events = () => client('events.v1.Events');
  const payload = () => encodeAny('containerd.events.ContainerDelete', { id: 'published' });

  test('Publish delivers the client event in the call namespace; subscribers filter on its fields', async () => {
    const mine = subscribe('topic=="/test/published",event.id==published');
    const other = subscribe('event.id==someone-else');
    await subscribers(2);
    await call(events(), 'Publish', { topic: '/test/published', event: payload() }, md('pub-ns'));
    await call(
      events(),
      'Publish',
      {
        topic: '/test/published',
        event: encodeAny('containerd.events.ContainerDelete', { id: 'someone-else' }),
      },
      md('pub-ns'),
    );
    const env = await mine.next();
    expect(env.namespace).toBe('pub-ns');
    expect(env.event).toEqual(payload());
    expect(env.timestamp.seconds).toBeGreaterThan(0);
    expect(decodeAny((await other.next()).event)).toEqual({ id: 'someone-else' });
  });

  test('Publish needs a namespace, a valid topic and an event', async () => {
    expect(await failure(call(events(), 'Publish', { topic: '/a', event: payload() }))).toEqual({
      code: GrpcCode.FAILED_PRECONDITION,
      details: 'failed publishing event: namespace is required',
    });
    const topic = await failure(call(events(), 'Publish', { topic: 'no-slash', event: payload() }, md('n')));
    expect(topic.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(topic.details).toContain('envelope topic "no-slash"');
    expect((await failure(call(events(), 'Publish', { topic: '/a' }, md('n')))).code).toBe(
      GrpcCode.INVALID_ARGUMENT,
    );
  });

  test('Forward keeps the envelope as made elsewhere, and checks it', async () => {
    const sub = subscribe('topic=="/tasks/exit"');
    await subscribers(1);
    const envelope = {
      timestamp: { seconds: 1_700_000_000, nanos: 5_000_000 },
      namespace: 'fwd',
      topic: '/tasks/exit',
      event: payload(),
    };
    await call(events(), 'Forward', { envelope });
    expect(await sub.next()).toEqual(envelope);
    expect(
      (await failure(call(events(), 'Forward', { envelope: { ...envelope, timestamp: null } }))).code,
    ).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(
      (await failure(call(events(), 'Forward', { envelope: { ...envelope, namespace: 'bad ns' } }))).code,
    ).toBe(GrpcCode.INVALID_ARGUMENT);
    expect((await failure(call(events(), 'Forward', {}))).code).toBe(GrpcCode.INVALID_ARGUMENT);
    // containerd never checks the event: an envelope without one is forwarded empty.
    const { event: _, ...bare } = envelope;
    await call(events(), 'Forward', { envelope: bare });
    expect(await sub.next()).toEqual({ ...bare, event: { typeUrl: '', value: Buffer.alloc(0) } });
  });

  test('a malformed subscription filter ends the stream with InvalidArgument', async () => {
    const sub = subscribe('topic==');
    await expect(sub.next()).rejects.toMatchObject({ code: GrpcCode.INVALID_ARGUMENT });
  });

  test('a subscriber that goes away is dropped from the exchange', async () => {
    const sub = subscribe();
    await subscribers(1);
    sub.cancel();
    await subscribers(0);
  });

  test('content and namespace mutations reach subscribers as containerd publishes them', async () => {
    const sub = subscribe('namespace==ev-ns');
    await subscribers(1);
    const api = connect(daemon.address);
    try {
      await call(client('namespaces.v1.Namespaces'), 'Create', { namespace: { name: 'ev-ns', labels: {} } });
      expect(await sub.nextEvent()).toMatchObject({ topic: '/namespaces/create', event: { name: 'ev-ns' } });
      const ctx = { namespace: 'ev-ns' };
      const data = Buffer.from('event me');
      const d = digestOf(data);
      const w = await api.content.writer(ctx, { ref: 'ev', desc: { digest: d, size: data.length } });
      await w.write(data);
      await w.commit(data.length, d);
      await w.close();
      await api.content.delete(ctx, d);
      expect(await sub.nextEvent()).toEqual({
        topic: '/content/delete',
        namespace: 'ev-ns',
        typeUrl: 'containerd.events.ContentDelete',
        event: { digest: d },
      });
      await call(client('namespaces.v1.Namespaces'), 'Delete', { name: 'ev-ns' });
      expect(await sub.nextEvent()).toMatchObject({ topic: '/namespaces/delete', event: { name: 'ev-ns' } });
    } finally {
      api.close();
    }
  });
});
