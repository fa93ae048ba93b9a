/**
 * berthd in-process on a temporary root: every foundation RPC through plain grpc-js
 * clients (built from @berth/api's loader, as any client would), error codes included,
 * and the ContentStore conformance suite over gRPC.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  decodeAny,
  digestOf,
  GrpcCode,
  grpcClientConstructor,
  NAMESPACE_HEADER,
  PluginType,
} from '@berth/api';
import { connect } from '@berth/client';
import { runContentStoreSuite } from '@berth/content/testing';
import {
  type Daemon,
  defaultConfig,
  type Exchange,
  type ExchangeEnvelope,
  REVISION,
  startDaemon,
  VERSION,
} from '@berth/daemon';
import { makeTempDir, removeDir } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

type Any = Record<string, any>;

let dir: string;
let daemon: Daemon;
const clients: grpc.Client[] = [];

function client(service: string): grpc.Client {
  const Ctor = grpcClientConstructor(`containerd.services.${service}`);
  const c = new Ctor(`unix://${daemon.address}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 16 << 20,
    'grpc.max_send_message_length': 16 << 20,
  });
  clients.push(c);
  return c;
}

function mdWith(namespace?: string, lease?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (namespace) m.set(NAMESPACE_HEADER, namespace);
  if (lease) m.set('containerd-lease', lease);
  return m;
}

const md = (namespace?: string) => mdWith(namespace);

/** A unary call as a promise; rejects with the grpc ServiceError (code, details). */
function call(c: grpc.Client, method: string, req: Any, meta = md()): Promise<Any> {
  return new Promise((resolve, reject) => {
    (c as any)[method](req, meta, (err: grpc.ServiceError | null, res: Any) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** Collects a server stream; rejects with its status error. */
function collect(
  c: grpc.Client,
  method: string,
  req: Any,
  meta = md(),
  opts: grpc.CallOptions = {},
): Promise<Any[]> {
  return new Promise((resolve, reject) => {
    const out: Any[] = [];
    const s = (c as any)[method](req, meta, opts) as grpc.ClientReadableStream<Any>;
    s.on('data', (m: Any) => out.push(m));
    s.on('error', reject);
    s.on('end', () => resolve(out));
  });
}

async function code(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error('expected the call to fail');
}

/** A Write session: send requests one by one and read each response, as containerd's client does. */
class WriteSession {
  private readonly stream: grpc.ClientDuplexStream<Any, Any>;
  private readonly responses: Any[] = [];
  private waiters: { resolve: (m: Any) => void; reject: (e: Error) => void }[] = [];
  private failure: grpc.ServiceError | undefined;
  ended = false;

  constructor(c: grpc.Client, meta: grpc.Metadata) {
    this.stream = (c as any).Write(meta);
    this.stream.on('data', (m: Any) => {
      const w = this.waiters.shift();
      if (w) w.resolve(m);
      else this.responses.push(m);
    });
    this.stream.on('error', (e: grpc.ServiceError) => {
      this.failure = e;
      for (const w of this.waiters.splice(0)) w.reject(e);
    });
    this.stream.on('end', () => {
      this.ended = true;
    });
  }

  send(req: Any): Promise<Any> {
    this.stream.write(req);
    return this.recv();
  }

  recv(): Promise<Any> {
    const m = this.responses.shift();
    if (m) return Promise.resolve(m);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Half-closes and waits for the server's status. */
  finish(): Promise<{ code: number; extra: Any[] }> {
    this.stream.end();
    return new Promise((resolve) => {
      this.stream.on('status', (st: grpc.StatusObject) =>
        resolve({ code: st.code, extra: this.responses.splice(0) }),
      );
    });
  }

  cancel(): void {
    this.stream.cancel();
  }

  /** Half-closes without waiting for the server, as containerd's Go writer's Close does. */
  close(): void {
    this.stream.end();
  }
}

beforeAll(async () => {
  dir = makeTempDir('berthd-int-');
  const config = defaultConfig();
  config.root = join(dir, 'root');
  config.state = join(dir, 'state');
  config.grpc.address = join(dir, 'run', 'berth.sock');
  daemon = await startDaemon(config);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await daemon?.stop();
  removeDir(dir);
});

describe('the server', () => {
  test('serves on a 0660 socket in a 0711 directory, and refuses a second daemon on it', async () => {
    expect(statSync(daemon.address).mode & 0o777).toBe(0o660);
    expect(statSync(join(dir, 'run')).mode & 0o777).toBe(0o711);
    const config = { ...daemon.config, root: join(dir, 'root2'), state: join(dir, 'state2') };
    await expect(startDaemon(config)).rejects.toThrow(
      `socket ${daemon.address}: another daemon is already serving on it`,
    );
    expect(existsSync(daemon.address)).toBe(true);
  });
});

describe('unary methods on the HTTP/2 fast path', () => {
  /** The same call twice: without a deadline (fast path) and with one (grpc-js); both outcomes. */
  async function both(c: grpc.Client, method: string, req: Any, meta: grpc.Metadata) {
    const outcome = (opts: grpc.CallOptions) =>
      new Promise<Any>((resolve) => {
        (c as any)[method](req, meta, opts, (err: grpc.ServiceError | null, res: Any) =>
          resolve(err ? { code: err.code, details: err.details } : { ok: res }),
        );
      });
    return { fast: await outcome({}), grpcJs: await outcome({ deadline: Date.now() + 30_000 }) };
  }

  test('every unary method is routed, ours and the snapshotter package handlers alike', () => {
    expect(daemon.fastPaths).toEqual(
      expect.arrayContaining([
        '/containerd.services.namespaces.v1.Namespaces/Get',
        '/containerd.services.content.v1.Content/Info',
        '/containerd.services.containers.v1.Containers/Create',
        '/containerd.services.snapshots.v1.Snapshots/Prepare',
        '/containerd.services.version.v1.Version/Version',
      ]),
    );
    // Streams stay with grpc-js (apart from Content/Read, which has its own raw handler).
    expect(daemon.fastPaths).not.toContain('/containerd.services.content.v1.Content/Write');
    expect(daemon.fastPaths).not.toContain('/containerd.services.snapshots.v1.Snapshots/List');
  });

  test('answers and errors are the same as through grpc-js', async () => {
    const ns = `fast-${randomBytes(3).toString('hex')}`;
    const namespaces = client('namespaces.v1.Namespaces');
    await call(namespaces, 'Create', { namespace: { name: ns, labels: { a: 'b' } } });
    const cases: [grpc.Client, string, Any, grpc.Metadata][] = [
      [namespaces, 'Get', { name: ns }, md()],
      [namespaces, 'Get', { name: 'no-such-namespace' }, md()],
      [namespaces, 'Create', { namespace: { name: 'Bad Name' } }, md()],
      [client('content.v1.Content'), 'Info', { digest: `sha256:${'7'.repeat(64)}` }, md(ns)],
      [client('content.v1.Content'), 'Info', { digest: 'sha256:nothex' }, md(ns)],
      [client('content.v1.Content'), 'Info', { digest: `sha256:${'7'.repeat(64)}` }, md()],
      [client('snapshots.v1.Snapshots'), 'Stat', { snapshotter: 'native', key: 'missing' }, md(ns)],
      [client('snapshots.v1.Snapshots'), 'Stat', { snapshotter: 'nosuch', key: 'k' }, md(ns)],
      [client('version.v1.Version'), 'Version', {}, md()],
    ];
    for (const [c, method, req, meta] of cases) {
      const { fast, grpcJs } = await both(c, method, req, meta);
      expect({ method, req, outcome: fast }).toEqual({ method, req, outcome: grpcJs });
    }
    const missing = await both(cases[6]![0], 'Stat', cases[6]![2], md(ns));
    expect(missing.fast).toEqual({
      code: GrpcCode.NOT_FOUND,
      details: expect.stringMatching(/missing.*not found$/),
    });
  });

  test('a snapshot prepared through the fast path is the one grpc-js stats', async () => {
    const ns = `fast-${randomBytes(3).toString('hex')}`;
    const snapshots = client('snapshots.v1.Snapshots');
    const prepared = await call(
      snapshots,
      'Prepare',
      { snapshotter: 'native', key: 'k1', labels: { x: 'y' } },
      md(ns),
    );
    expect(prepared.mounts).toHaveLength(1);
    const { fast, grpcJs } = await both(snapshots, 'Stat', { snapshotter: 'native', key: 'k1' }, md(ns));
    expect(fast).toEqual(grpcJs);
    expect(fast.ok.info).toMatchObject({ name: 'k1', kind: 'ACTIVE', labels: { x: 'y' } });
    await call(snapshots, 'Remove', { snapshotter: 'native', key: 'k1' }, md(ns));
  });
});

describe('Version', () => {
  test('reports berthd version and revision', async () => {
    expect(await call(client('version.v1.Version'), 'Version', {})).toEqual({
      version: VERSION,
      revision: REVISION,
    });
  });
});

describe('Introspection', () => {
  test('lists every plugin as loaded, with requires and exports', async () => {
    const { plugins } = await call(client('introspection.v1.Introspection'), 'Plugins', { filters: [] });
    const ids = plugins.map((p: Any) => `${p.type}.${p.id}`);
    for (const id of [
      'io.containerd.content.v1.content',
      'io.containerd.metadata.v1.sqlite',
      'io.containerd.gc.v1.scheduler',
      'io.containerd.service.v1.content-service',
      'io.containerd.grpc.v1.version',
      'io.containerd.grpc.v1.introspection',
      'io.containerd.grpc.v1.namespaces',
      'io.containerd.grpc.v1.leases',
      'io.containerd.grpc.v1.content',
    ]) {
      expect(ids).toContain(id);
    }
    expect(plugins.filter((p: Any) => p.initErr != null)).toEqual([]);
    const meta = plugins.find((p: Any) => p.type === PluginType.Metadata);
    expect(meta.requires).toEqual([PluginType.Content]);
    expect(meta.exports.path).toBe(join(daemon.config.root, 'io.containerd.metadata.v1.sqlite', 'meta.db'));
  });

  test('filters on type and id; a malformed filter is InvalidArgument', async () => {
    const c = client('introspection.v1.Introspection');
    const grpcOnly = await call(c, 'Plugins', { filters: ['type==io.containerd.grpc.v1'] });
    expect(grpcOnly.plugins.filter((p: Any) => p.type !== PluginType.GRPC)).toEqual([]);
    expect(grpcOnly.plugins.map((p: Any) => p.id)).toEqual(
      expect.arrayContaining(['content', 'introspection', 'leases', 'namespaces', 'version']),
    );
    const content = await call(c, 'Plugins', { filters: ['id==content'] });
    expect(content.plugins.map((p: Any) => p.type).sort()).toEqual([PluginType.Content, PluginType.GRPC]);
    const either = await call(c, 'Plugins', {
      filters: ['id==version', 'id==leases,type==io.containerd.grpc.v1'],
    });
    expect(either.plugins.map((p: Any) => p.id).sort()).toEqual(['leases', 'version']);
    expect((await code(call(c, 'Plugins', { filters: ['type=='] }))).code).toBe(GrpcCode.INVALID_ARGUMENT);
  });

  test('Server reports a uuid persisted under the root', async () => {
    const c = client('introspection.v1.Introspection');
    const { uuid, pid, pidns } = await call(c, 'Server', {});
    // The daemon runs in this process; pidns is the namespace's inode, as containerd sends it.
    expect([pid, pidns]).toEqual([process.pid, statSync('/proc/self/ns/pid').ino]);
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect((await call(c, 'Server', {})).uuid).toBe(uuid);
    expect(
      readFileSync(join(daemon.config.root, 'io.containerd.grpc.v1.introspection', 'uuid'), 'utf8'),
    ).toBe(uuid);
  });
});

function exchange(): Exchange {
  return daemon.registry.instancesOf<Exchange>(PluginType.Event)[0]!.instance;
}

/** The next envelope, leaving the subscription open (a for-await loop would close it). */
async function next(sub: AsyncIterable<ExchangeEnvelope>): Promise<ExchangeEnvelope> {
  const r = await sub[Symbol.asyncIterator]().next();
  if (r.done) throw new Error('subscription ended');
  return r.value;
}

describe('Namespaces', () => {
  test('create, get, list, update labels by path and wholesale, delete — with events', async () => {
    const c = client('namespaces.v1.Namespaces');
    const events = exchange().subscribe(['topic~="^/namespaces/",event.name==ns-crud']);
    const created = await call(c, 'Create', { namespace: { name: 'ns-crud', labels: { a: '1', b: '2' } } });
    expect(created.namespace).toEqual({ name: 'ns-crud', labels: { a: '1', b: '2' } });
    const ev = await next(events);
    expect(ev.topic).toBe('/namespaces/create');
    expect(decodeAny(ev.event)).toEqual({ name: 'ns-crud', labels: { a: '1', b: '2' } });

    expect((await call(c, 'Get', { name: 'ns-crud' })).namespace).toEqual({
      name: 'ns-crud',
      labels: { a: '1', b: '2' },
    });
    const { namespaces } = await call(c, 'List', {});
    expect(namespaces).toContainEqual({ name: 'ns-crud', labels: { a: '1', b: '2' } });

    await call(c, 'Update', {
      namespace: { name: 'ns-crud', labels: { a: '', c: '3' } },
      updateMask: ['labels.a', 'labels.c'],
    });
    expect((await call(c, 'Get', { name: 'ns-crud' })).namespace.labels).toEqual({ b: '2', c: '3' });
    expect((await next(events)).topic).toBe('/namespaces/update');

    await call(c, 'Update', { namespace: { name: 'ns-crud', labels: { z: '26' } } });
    expect((await call(c, 'Get', { name: 'ns-crud' })).namespace.labels).toEqual({ z: '26' });
    await call(c, 'Update', {
      namespace: { name: 'ns-crud', labels: { y: '25' } },
      updateMask: ['labels'],
    });
    expect((await call(c, 'Get', { name: 'ns-crud' })).namespace.labels).toEqual({ y: '25' });
    await next(events);
    await next(events);

    const bad = await code(call(c, 'Update', { namespace: { name: 'ns-crud' }, updateMask: ['name'] }));
    expect(bad).toEqual({ code: GrpcCode.INVALID_ARGUMENT, details: 'cannot update "name" field' });

    await call(c, 'Delete', { name: 'ns-crud' });
    expect((await next(events)).topic).toBe('/namespaces/delete');
    events.close();
    // As containerd: a deleted (or never created) namespace reads as one without labels.
    expect((await call(c, 'Get', { name: 'ns-crud' })).namespace).toEqual({ name: 'ns-crud', labels: {} });
    expect((await call(c, 'List', {})).namespaces.map((n: Any) => n.name)).not.toContain('ns-crud');
  });

  test('errors: AlreadyExists, NotFound on delete, InvalidArgument, FailedPrecondition for a non-empty namespace', async () => {
    const c = client('namespaces.v1.Namespaces');
    await call(c, 'Create', { namespace: { name: 'ns-err' } });
    expect((await code(call(c, 'Create', { namespace: { name: 'ns-err' } }))).code).toBe(
      GrpcCode.ALREADY_EXISTS,
    );
    expect((await call(c, 'Get', { name: 'ns-none' })).namespace).toEqual({ name: 'ns-none', labels: {} });
    expect((await code(call(c, 'Get', { name: 'Bad Name!' }))).code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect((await code(call(c, 'Delete', { name: 'ns-none' }))).code).toBe(GrpcCode.NOT_FOUND);
    const invalid = await code(call(c, 'Create', { namespace: { name: 'Bad Name!' } }));
    expect(invalid.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(invalid.details).toContain('Bad Name!');

    // A blob (held by a lease, or the collector would take it) keeps the namespace busy.
    const leases = client('leases.v1.Leases');
    await call(leases, 'Create', { id: 'keeps-ns-busy' }, md('ns-err'));
    const w = new WriteSession(client('content.v1.Content'), mdWith('ns-err', 'keeps-ns-busy'));
    const blob = Buffer.from('occupant');
    await w.send({ action: 'WRITE', ref: 'occupant', data: blob });
    await w.send({ action: 'COMMIT', offset: blob.length, expected: digestOf(blob) });
    await w.finish();
    const busy = await code(call(c, 'Delete', { name: 'ns-err' }));
    expect(busy).toEqual({
      code: GrpcCode.FAILED_PRECONDITION,
      details: 'namespace "ns-err" must be empty, but it still has blobs',
    });
    await call(leases, 'Delete', { id: 'keeps-ns-busy', sync: true }, md('ns-err'));
    await call(c, 'Delete', { name: 'ns-err' });
  });
});

describe('Leases', () => {
  const ns = 'leases-ns';

  test('create, list with filters, resources, delete', async () => {
    const c = client('leases.v1.Leases');
    const before = Date.now();
    const { lease } = await call(c, 'Create', { id: 'l-one', labels: { owner: 'test' } }, md(ns));
    expect(lease).toMatchObject({ id: 'l-one', labels: { owner: 'test' } });
    expect(lease.createdAt.seconds * 1000).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    const generated = (await call(c, 'Create', {}, md(ns))).lease;
    expect(generated.id).not.toBe('');

    expect((await call(c, 'List', { filters: [] }, md(ns))).leases.map((l: Any) => l.id).sort()).toEqual(
      ['l-one', generated.id].sort(),
    );
    expect(
      (await call(c, 'List', { filters: ['labels.owner==test'] }, md(ns))).leases.map((l: Any) => l.id),
    ).toEqual(['l-one']);
    expect((await call(c, 'List', { filters: ['id==nope'] }, md(ns))).leases).toEqual([]);

    const res = { id: `sha256:${'a'.repeat(64)}`, type: 'content' };
    await call(c, 'AddResource', { id: 'l-one', resource: res }, md(ns));
    expect((await call(c, 'ListResources', { id: 'l-one' }, md(ns))).resources).toEqual([res]);
    await call(c, 'DeleteResource', { id: 'l-one', resource: res }, md(ns));
    expect((await call(c, 'ListResources', { id: 'l-one' }, md(ns))).resources).toEqual([]);

    await call(c, 'Delete', { id: 'l-one', sync: true }, md(ns));
    await call(c, 'Delete', { id: generated.id }, md(ns));
    expect((await call(c, 'List', {}, md(ns))).leases).toEqual([]);
  });

  test('errors: namespace required, AlreadyExists, NotFound, InvalidArgument', async () => {
    const c = client('leases.v1.Leases');
    const noNs = await code(call(c, 'Create', { id: 'x' }));
    expect(noNs).toEqual({ code: GrpcCode.FAILED_PRECONDITION, details: 'namespace is required' });
    await call(c, 'Create', { id: 'dup' }, md(ns));
    expect((await code(call(c, 'Create', { id: 'dup' }, md(ns)))).code).toBe(GrpcCode.ALREADY_EXISTS);
    expect((await code(call(c, 'Delete', { id: 'missing' }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await code(call(c, 'ListResources', { id: 'missing' }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await code(call(c, 'Create', { id: 'bad id!' }, md(ns)))).code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(
      (await code(call(c, 'AddResource', { id: 'dup', resource: { id: 'x', type: 'bogus' } }, md(ns)))).code,
    ).toBe(GrpcCode.INVALID_ARGUMENT);
    await call(c, 'Delete', { id: 'dup' }, md(ns));
  });
});

describe('Content', () => {
  const ns = 'content-ns';
  const MiB = 1 << 20;
  // Blobs nothing references are garbage; the tests hold them with a lease, as clients do.
  const lease = 'content-tests';
  const md = (namespace?: string) => mdWith(namespace, namespace ? lease : undefined);

  beforeAll(async () => {
    await call(client('leases.v1.Leases'), 'Create', { id: lease }, mdWith(ns));
    await call(client('leases.v1.Leases'), 'Create', { id: lease }, mdWith('other-ns'));
  });

  async function ingest(
    ref: string,
    data: Buffer,
    opts: { expected?: string; labels?: Any } = {},
  ): Promise<Any> {
    const s = new WriteSession(client('content.v1.Content'), md(ns));
    const stat = await s.send({ action: 'STAT', ref, total: data.length, expected: opts.expected ?? '' });
    expect(stat).toMatchObject({ action: 'STAT', offset: 0, total: data.length });
    let offset = 0;
    while (offset < data.length) {
      const chunk = data.subarray(offset, offset + MiB);
      const r = await s.send({ action: 'WRITE', offset, data: chunk });
      offset += chunk.length;
      expect(r).toMatchObject({ action: 'WRITE', offset });
    }
    const digest = digestOf(data);
    const done = await s.send({
      action: 'COMMIT',
      offset,
      total: data.length,
      expected: opts.expected ?? digest,
      labels: opts.labels ?? {},
    });
    expect(done).toMatchObject({ action: 'COMMIT', offset: data.length, digest });
    await s.finish();
    return done;
  }

  test('Write (STAT, WRITE, COMMIT), Info, Read (whole, ranged, chunked), Update, List, Delete', async () => {
    const c = client('content.v1.Content');
    const data = randomBytes(2 * MiB + 123);
    const digest = digestOf(data);
    const events = exchange().subscribe([`event.digest==${JSON.stringify(digest)}`]);
    await ingest('blob-1', data, { labels: { 'test.berth/kind': 'big' } });

    const { info } = await call(c, 'Info', { digest }, md(ns));
    expect(info).toMatchObject({ digest, size: data.length, labels: { 'test.berth/kind': 'big' } });

    const whole = await collect(c, 'Read', { digest }, md(ns));
    expect(whole.map((m) => m.data.length)).toEqual([MiB, MiB, 123]);
    expect(whole.map((m) => m.offset)).toEqual([0, MiB, 2 * MiB]);
    expect(Buffer.concat(whole.map((m) => m.data)).equals(data)).toBe(true);

    const ranged = await collect(c, 'Read', { digest, offset: 10, size: 100 }, md(ns));
    expect(Buffer.concat(ranged.map((m) => m.data)).equals(data.subarray(10, 110))).toBe(true);
    const tail = await collect(c, 'Read', { digest, offset: data.length - 5, size: 100 }, md(ns));
    expect(Buffer.concat(tail.map((m) => m.data)).equals(data.subarray(-5))).toBe(true);
    expect(await collect(c, 'Read', { digest, offset: data.length }, md(ns))).toEqual([]);

    const updated = await call(
      c,
      'Update',
      {
        info: { digest, labels: { 'test.berth/kind': '', extra: 'yes' } },
        updateMask: ['labels.test.berth/kind', 'labels.extra'],
      },
      md(ns),
    );
    expect(updated.info.labels).toEqual({ extra: 'yes' });

    const listed = (await collect(c, 'List', { filters: ['labels.extra==yes'] }, md(ns))).flatMap(
      (m) => m.info,
    );
    expect(listed.map((i: Any) => i.digest)).toEqual([digest]);
    expect(
      (await collect(c, 'List', { filters: ['labels.extra==no'] }, md(ns))).flatMap((m) => m.info),
    ).toEqual([]);

    await call(c, 'Delete', { digest }, md(ns));
    const ev = await next(events);
    events.close();
    expect(ev).toMatchObject({ topic: '/content/delete', namespace: ns });
    expect(decodeAny(ev.event)).toEqual({ digest });
    expect((await code(call(c, 'Info', { digest }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
  });

  test('Read answers the same through grpc-js (a call with a deadline) as through the HTTP/2 fast path', async () => {
    const c = client('content.v1.Content');
    const data = randomBytes(MiB + 77);
    await ingest('both-paths', data);
    const digest = digestOf(data);
    expect(daemon.fastPaths).toContain('/containerd.services.content.v1.Content/Read');
    const viaGrpcJs = { deadline: Date.now() + 30_000 };
    for (const req of [
      { digest },
      { digest, offset: 5, size: 1000 },
      { digest, offset: MiB, size: 0 },
      { digest, offset: -3, size: 2 },
    ]) {
      const fast = await collect(c, 'Read', req, md(ns));
      const slow = await collect(c, 'Read', req, md(ns), viaGrpcJs);
      expect(fast.map((m) => m.offset)).toEqual(slow.map((m) => m.offset));
      expect(Buffer.concat(fast.map((m) => m.data)).equals(Buffer.concat(slow.map((m) => m.data)))).toBe(
        true,
      );
    }
    for (const req of [
      { digest: `sha256:${'9'.repeat(64)}` },
      { digest: 'bad' },
      { digest, offset: data.length + 1 },
    ]) {
      expect(await code(collect(c, 'Read', req, md(ns)))).toEqual(
        await code(collect(c, 'Read', req, md(ns), viaGrpcJs)),
      );
    }
    expect(await code(collect(c, 'Read', { digest }))).toEqual(
      await code(collect(c, 'Read', { digest }, md(), viaGrpcJs)),
    );
  });

  test('List sends large listings in batches', async () => {
    const c = client('content.v1.Content');
    const mark = randomBytes(4).toString('hex');
    for (let i = 0; i < 150; i++) {
      const s = new WriteSession(c, md(ns));
      const data = Buffer.from(`${mark}-${i}`);
      await s.send({ action: 'WRITE', ref: `batch-${mark}-${i}`, data });
      await s.send({
        action: 'COMMIT',
        offset: data.length,
        expected: digestOf(data),
        labels: { batch: mark },
      });
      await s.finish();
    }
    const messages = await collect(c, 'List', { filters: [`labels.batch==${mark}`] }, md(ns));
    expect(messages.map((m) => m.info.length)).toEqual([100, 50]);
  });

  test('errors: NotFound unknown digest, InvalidArgument malformed digest, OutOfRange past the end, namespace required', async () => {
    const c = client('content.v1.Content');
    const missing = `sha256:${'0'.repeat(64)}`;
    expect((await code(call(c, 'Info', { digest: missing }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await code(collect(c, 'Read', { digest: missing }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await code(call(c, 'Delete', { digest: missing }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
    for (const bad of ['sha256:xyz', 'nodigest', '']) {
      const info = await code(call(c, 'Info', { digest: bad }, md(ns)));
      expect(info.code).toBe(GrpcCode.INVALID_ARGUMENT);
      expect(info.details).toContain(`"${bad}"`);
      expect((await code(collect(c, 'Read', { digest: bad }, md(ns)))).code).toBe(GrpcCode.INVALID_ARGUMENT);
      expect((await code(call(c, 'Delete', { digest: bad }, md(ns)))).code).toBe(GrpcCode.INVALID_ARGUMENT);
      expect((await code(call(c, 'Update', { info: { digest: bad } }, md(ns)))).code).toBe(
        GrpcCode.INVALID_ARGUMENT,
      );
    }
    const data = Buffer.from('short blob');
    await ingest('short', data);
    const past = await code(collect(c, 'Read', { digest: digestOf(data), offset: data.length + 1 }, md(ns)));
    expect(past).toEqual({
      code: GrpcCode.OUT_OF_RANGE,
      details: `read past object length ${data.length} bytes`,
    });
    expect(await code(call(c, 'Info', { digest: missing }))).toEqual({
      code: GrpcCode.FAILED_PRECONDITION,
      details: 'namespace is required',
    });
    expect((await code(collect(c, 'List', {}))).code).toBe(GrpcCode.FAILED_PRECONDITION);
    expect((await code(call(c, 'Info', { digest: digestOf(data) }, md('other-ns')))).code).toBe(
      GrpcCode.NOT_FOUND,
    );
  });

  test('Write errors: first message without ref, write off the current offset, existing expected digest', async () => {
    const c = client('content.v1.Content');
    const noRef = new WriteSession(c, md(ns));
    const e1 = await code(noRef.send({ action: 'WRITE', data: Buffer.from('x') }));
    expect(e1).toEqual({ code: GrpcCode.INVALID_ARGUMENT, details: 'first message must have a reference' });

    const s = new WriteSession(c, md(ns));
    await s.send({ action: 'WRITE', ref: 'off-by-some', data: Buffer.from('abc') });
    const e2 = await code(s.send({ action: 'WRITE', offset: 7, data: Buffer.from('x') }));
    expect(e2).toEqual({ code: GrpcCode.OUT_OF_RANGE, details: 'write @7 must occur at current offset 3' });
    await call(c, 'Abort', { ref: 'off-by-some' }, md(ns));

    const data = Buffer.from('already here');
    await ingest('present-1', data);
    const again = new WriteSession(c, md(ns));
    const e3 = await code(again.send({ action: 'STAT', ref: 'present-2', expected: digestOf(data) }));
    expect(e3).toEqual({
      code: GrpcCode.ALREADY_EXISTS,
      details: `content ${digestOf(data)}: already exists`,
    });

    // The blob appears while a writer that did not say what it writes is open: its commit
    // naming that digest is AlreadyExists and the ingest is dropped.
    const late = Buffer.from('written twice');
    const slow = new WriteSession(c, md(ns));
    await slow.send({ action: 'WRITE', ref: 'late-1', data: late });
    await ingest('late-2', late);
    const e5 = await code(slow.send({ action: 'COMMIT', expected: digestOf(late) }));
    expect(e5).toEqual({
      code: GrpcCode.ALREADY_EXISTS,
      details: `blob with expected digest ${digestOf(late)} exists`,
    });
    expect((await code(call(c, 'Status', { ref: 'late-1' }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);

    const wrong = new WriteSession(c, md(ns));
    await wrong.send({ action: 'WRITE', ref: 'wrong-digest', data: Buffer.from('bytes') });
    const e4 = await code(wrong.send({ action: 'COMMIT', expected: `sha256:${'1'.repeat(64)}` }));
    expect(e4.code).toBe(GrpcCode.FAILED_PRECONDITION);
    await call(c, 'Abort', { ref: 'wrong-digest' }, md(ns));

    const noNs = new WriteSession(c, mdWith());
    expect((await code(noNs.send({ action: 'STAT', ref: 'x' }))).code).toBe(GrpcCode.FAILED_PRECONDITION);
  });

  test('a second writer on a busy ref is Unavailable; the lock goes with the stream', async () => {
    const c = client('content.v1.Content');
    const first = new WriteSession(c, md(ns));
    await first.send({ action: 'WRITE', ref: 'busy', data: Buffer.from('partial') });

    const second = new WriteSession(c, md(ns));
    const busy = await code(second.send({ action: 'STAT', ref: 'busy' }));
    expect(busy.code).toBe(GrpcCode.UNAVAILABLE);
    expect(busy.details).toContain('busy');

    const { status } = await call(c, 'Status', { ref: 'busy' }, md(ns));
    expect(status).toMatchObject({ ref: 'busy', offset: 7 });
    const { statuses } = await call(c, 'ListStatuses', { filters: ['ref==busy'] }, md(ns));
    expect(statuses.map((s: Any) => s.ref)).toEqual(['busy']);

    // A client that goes away without a word releases the ref too.
    first.cancel();
    let resumed: Any | undefined;
    for (let i = 0; i < 100 && !resumed; i++) {
      const third = new WriteSession(c, md(ns));
      try {
        resumed = await third.send({ action: 'STAT', ref: 'busy' });
        const rest = Buffer.from(' and the rest');
        const w = await third.send({ action: 'WRITE', offset: 7, data: rest });
        expect(w.offset).toBe(20);
        const commit = await third.send({
          action: 'COMMIT',
          offset: 20,
          expected: digestOf(Buffer.from('partial and the rest')),
        });
        expect(commit.digest).toBe(digestOf(Buffer.from('partial and the rest')));
        await third.finish();
      } catch (err) {
        expect(err).toMatchObject({ code: GrpcCode.UNAVAILABLE });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(resumed).toMatchObject({ action: 'STAT', offset: 7 });
  });

  test('a writer closed without commit frees its ref at once: the next Write resumes at its offset', async () => {
    const c = client('content.v1.Content');
    const data = randomBytes(300);
    const digest = digestOf(data);
    // containerd's client closes (a half-close, no wait for the status) and reopens at
    // once; the suite's Resume cases do this for a series of refs and sizes.
    for (const cut of [0, 1, 100, 299]) {
      const ref = `resume-${cut}`;
      const first = new WriteSession(c, md(ns));
      await first.send({ action: 'STAT', ref, total: data.length, expected: digest });
      if (cut > 0) await first.send({ action: 'WRITE', offset: 0, data: data.subarray(0, cut) });
      first.close();

      const second = new WriteSession(c, md(ns));
      const stat = await second.send({ action: 'STAT', ref, total: data.length, expected: digest });
      expect(stat).toMatchObject({ action: 'STAT', offset: cut, total: data.length });
      const w = await second.send({ action: 'WRITE', offset: cut, data: data.subarray(cut) });
      expect(w.offset).toBe(data.length);
      const done = await second.send({
        action: 'COMMIT',
        offset: data.length,
        total: data.length,
        expected: digest,
      });
      expect(done.digest).toBe(digest);
      await second.finish();
      await call(c, 'Delete', { digest }, md(ns));
    }
  });

  test('a writer that fails or is cancelled frees its ref for the next Write at once', async () => {
    const c = client('content.v1.Content');
    const failing = new WriteSession(c, md(ns));
    await failing.send({ action: 'WRITE', ref: 'fails', offset: 0, data: Buffer.from('12345') });
    // A write off the current offset ends the stream with an error.
    expect((await code(failing.send({ action: 'WRITE', offset: 3, data: Buffer.from('x') }))).code).toBe(
      GrpcCode.OUT_OF_RANGE,
    );
    const after = new WriteSession(c, md(ns));
    expect(await after.send({ action: 'STAT', ref: 'fails' })).toMatchObject({ offset: 5 });

    after.cancel();
    const again = new WriteSession(c, md(ns));
    expect(await again.send({ action: 'STAT', ref: 'fails' })).toMatchObject({ offset: 5 });
    // Still held by a live stream: a concurrent writer is refused, naming the ref.
    const concurrent = new WriteSession(c, md(ns));
    const busy = await code(concurrent.send({ action: 'STAT', ref: 'fails' }));
    expect(busy.code).toBe(GrpcCode.UNAVAILABLE);
    expect(busy.details).toMatch(/ref \S*fails locked/);
    again.close();
    await call(c, 'Abort', { ref: 'fails' }, md(ns)).catch(() => {});
  });

  test('STAT reports times, total and the running digest; WRITE at offset 0 starts over', async () => {
    const c = client('content.v1.Content');
    const s = new WriteSession(c, md(ns));
    const first = await s.send({ action: 'STAT', ref: 'restart', total: 5 });
    expect(first).toMatchObject({ action: 'STAT', offset: 0, total: 5, digest: digestOf(Buffer.alloc(0)) });
    expect(first.startedAt.seconds).toBeGreaterThan(0);
    const w = await s.send({ action: 'WRITE', data: Buffer.from('wrong') });
    expect(w).toMatchObject({ offset: 5, digest: digestOf(Buffer.from('wrong')) });
    const again = await s.send({ action: 'WRITE', offset: 0, data: Buffer.from('right') });
    expect(again).toMatchObject({ offset: 5, digest: digestOf(Buffer.from('right')) });
    const commit = await s.send({ action: 'COMMIT', offset: 5 });
    expect(commit.digest).toBe(digestOf(Buffer.from('right')));
    const { extra } = await s.finish();
    expect(extra).toHaveLength(1); // containerd repeats its last response as the handler returns
    expect((await call(c, 'Info', { digest: digestOf(Buffer.from('right')) }, md(ns))).info.size).toBe(5);
  });

  test('Status, ListStatuses, Abort', async () => {
    const c = client('content.v1.Content');
    const s = new WriteSession(c, md(ns));
    await s.send({ action: 'WRITE', ref: 'to-abort', total: 10, data: Buffer.from('12345') });
    await s.finish();
    const { status } = await call(c, 'Status', { ref: 'to-abort' }, md(ns));
    expect(status).toMatchObject({ ref: 'to-abort', offset: 5, total: 10 });
    await call(c, 'Abort', { ref: 'to-abort' }, md(ns));
    const gone = await code(call(c, 'Status', { ref: 'to-abort' }, md(ns)));
    expect(gone.code).toBe(GrpcCode.NOT_FOUND);
    expect(gone.details).toMatch(/^could not get status for ref "to-abort": /);
    expect((await code(call(c, 'Abort', { ref: 'to-abort' }, md(ns)))).code).toBe(GrpcCode.NOT_FOUND);
    expect((await code(call(c, 'ListStatuses', { filters: ['ref=='] }, md(ns)))).code).toBe(
      GrpcCode.INVALID_ARGUMENT,
    );
  });

  test('a 16 MiB message is accepted, containerd max', async () => {
    const data = randomBytes(15 * MiB);
    const s = new WriteSession(client('content.v1.Content'), md(ns));
    const r = await s.send({ action: 'WRITE', ref: 'huge', data });
    expect(r.offset).toBe(data.length);
    const commit = await s.send({
      action: 'COMMIT',
      offset: data.length,
      expected: `sha256:${createHash('sha256').update(data).digest('hex')}`,
    });
    expect(commit.offset).toBe(data.length);
    await s.finish();
  });
});

runContentStoreSuite('berthd over gRPC', async () => {
  const cl = connect(daemon.address);
  // The lease keeps the suite's blobs from the garbage collector, as any client must.
  const lease = await cl.leases.create({ namespace: 'conformance' }, {});
  return {
    store: cl.content,
    ctx: { namespace: 'conformance', lease: lease.id },
    cleanup: async () => {
      await cl.leases.delete({ namespace: 'conformance' }, lease.id);
      cl.close();
    },
  };
});
