/**
 * Our protos against a real containerd 1.6 (Debian's package) on a temporary root:
 * calls made and answers decoded purely through @berth/api's loader. Needs root.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeAny, encodeAny, grpcClientConstructor } from '@berth/api';
import * as grpc from '@grpc/grpc-js';

const CONTAINERD = '/usr/bin/containerd';

type Unary = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: any) => void) => void;

describe('protos against a real containerd', () => {
  let dir: string;
  let daemon: ChildProcess | undefined;
  let address: string;
  const clients: grpc.Client[] = [];
  const md = new grpc.Metadata();
  md.set('containerd-namespace', 'berth-proto-test');

  beforeAll(async () => {
    if (!fs.existsSync(CONTAINERD)) {
      throw new Error(`${CONTAINERD} not found: install the Debian containerd package to run this test`);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-proto-interop-'));
    address = path.join(dir, 'containerd.sock');
    fs.writeFileSync(
      path.join(dir, 'config.toml'),
      [
        'version = 2',
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${address}"`,
        '[ttrpc]',
        `  address = "${address}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${dir}/opt"`,
      ].join('\n'),
    );
    const log = fs.openSync(path.join(dir, 'containerd.log'), 'w');
    daemon = spawn(CONTAINERD, ['--config', path.join(dir, 'config.toml')], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    // The daemon is ready once its gRPC socket answers.
    const Version = grpcClientConstructor('containerd.services.version.v1.Version');
    const probe = new Version(`unix://${address}`, grpc.credentials.createInsecure());
    try {
      await new Promise<void>((resolve, reject) => {
        probe.waitForReady(Date.now() + 20000, (err) =>
          err
            ? reject(
                new Error(
                  `containerd did not come up: ${fs.readFileSync(path.join(dir, 'containerd.log'), 'utf8')}`,
                ),
              )
            : resolve(),
        );
      });
    } finally {
      probe.close();
    }
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    if (daemon?.pid !== undefined && daemon.exitCode === null) {
      const exited = new Promise((resolve) => daemon?.once('exit', resolve));
      process.kill(daemon.pid, 'SIGTERM');
      await exited;
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function client(service: string): Record<string, any> {
    const Ctor = grpcClientConstructor(service);
    const c = new Ctor(`unix://${address}`, grpc.credentials.createInsecure());
    clients.push(c);
    return c as unknown as Record<string, any>;
  }

  const call = (c: Record<string, any>, method: string, req: object): Promise<any> =>
    new Promise((resolve, reject) => {
      (c[method] as Unary).call(c, req, md, (err, res) => (err ? reject(err) : resolve(res)));
    });

  it('decodes Version and Introspection answers', async () => {
    const version = await call(client('containerd.services.version.v1.Version'), 'Version', {});
    expect(version.version).toMatch(/^1\./);
    const intro = client('containerd.services.introspection.v1.Introspection');
    const { plugins } = await call(intro, 'Plugins', { filters: ['type==io.containerd.content.v1'] });
    expect(plugins).toEqual([
      expect.objectContaining({ type: 'io.containerd.content.v1', id: 'content', initErr: undefined }),
    ]);
    const server = await call(intro, 'Server', {});
    expect(server.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('creates a namespace with labels and reads it back', async () => {
    const ns = client('containerd.services.namespaces.v1.Namespaces');
    await call(ns, 'Create', { namespace: { name: 'berth-ns', labels: { a: 'b' } } });
    const got = await call(ns, 'Get', { name: 'berth-ns' });
    expect(got.namespace).toEqual({ name: 'berth-ns', labels: { a: 'b' } });
    await expect(call(ns, 'Create', { namespace: { name: 'berth-ns' } })).rejects.toMatchObject({
      code: grpc.status.ALREADY_EXISTS,
    });
  });

  it('writes a blob through the bidirectional Write stream and streams it back', async () => {
    const content = client('containerd.services.content.v1.Content');
    const data = Buffer.from('berth speaks containerd');
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const responses: any[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = content.Write(md);
      stream.on('data', (r: any) => responses.push(r));
      stream.on('error', reject);
      stream.on('end', resolve);
      // The gc.root label keeps containerd's collector from removing the unreferenced blob.
      stream.write({
        action: 'COMMIT',
        ref: 'proto-test',
        total: data.length,
        expected: digest,
        data,
        labels: { 'containerd.io/gc.root': 'proto-test' },
      });
      stream.end();
    });
    expect(responses.at(-1)).toMatchObject({ action: 'COMMIT', offset: data.length, digest });

    const missing = `sha256:${'0'.repeat(64)}`;
    await expect(call(content, 'Info', { digest: missing })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    const info = await call(content, 'Info', { digest });
    expect(info.info).toMatchObject({
      digest,
      size: data.length,
      labels: { 'containerd.io/gc.root': 'proto-test' },
    });
    expect(typeof info.info.createdAt.seconds).toBe('number');

    const chunks: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      const read = content.Read({ digest, offset: 6 }, md);
      read.on('data', (r: any) => chunks.push(r.data));
      read.on('error', reject);
      read.on('end', resolve);
    });
    expect(Buffer.concat(chunks).toString()).toBe('speaks containerd');
  });

  it('creates a lease, and carries an Any through Publish and Subscribe', async () => {
    const leases = client('containerd.services.leases.v1.Leases');
    const { lease } = await call(leases, 'Create', { id: 'berth-lease', labels: { x: 'y' } });
    expect(lease).toMatchObject({ id: 'berth-lease', labels: { x: 'y' } });

    const events = client('containerd.services.events.v1.Events');
    const received = new Promise<any>((resolve, reject) => {
      const sub = events.Subscribe({ filters: ['topic=="/berth/test"'] }, md);
      sub.on('data', (env: any) => {
        resolve(env);
        sub.cancel();
      });
      sub.on('error', (err: grpc.ServiceError) => {
        if (err.code !== grpc.status.CANCELLED) reject(err);
      });
    });
    // Give the subscription a moment to register before publishing, and retry until seen.
    const event = encodeAny('containerd.events.ContainerDelete', { id: 'c1' });
    const publisher = setInterval(() => {
      call(events, 'Publish', { topic: '/berth/test', event }).catch(() => {});
    }, 100);
    try {
      const env = await received;
      expect(env).toMatchObject({ namespace: 'berth-proto-test', topic: '/berth/test' });
      expect(env.event.typeUrl).toBe('containerd.events.ContainerDelete');
      expect(decodeAny(env.event)).toEqual({ id: 'c1' });
    } finally {
      clearInterval(publisher);
    }
  });
});
