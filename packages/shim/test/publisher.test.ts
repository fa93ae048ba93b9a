import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeAny } from '@berth/api';
import { TtrpcServer } from '@berth/ttrpc';
import { silentLogger } from '../src/log';
import { EVENTS_SERVICE, Publisher } from '../src/publisher';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-pub-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Seen {
  topic: string;
  namespace: string;
  event: Record<string, unknown>;
  metaNamespace?: string;
}

async function eventsServer(path: string, seen: Seen[]): Promise<TtrpcServer> {
  const server = new TtrpcServer();
  server.register(EVENTS_SERVICE, {
    Forward: (req: any, ctx) => {
      const env = req.envelope;
      seen.push({
        topic: env.topic,
        namespace: env.namespace,
        event: decodeAny(env.event),
        metaNamespace: ctx.namespace,
      });
      return {};
    },
  });
  await server.listen(path);
  return server;
}

test('forwards events in order as Envelopes with containerd event types', async () => {
  const path = join(dir, 'd.sock.ttrpc');
  const seen: Seen[] = [];
  const server = await eventsServer(path, seen);
  const pub = new Publisher(path, silentLogger);
  try {
    pub.publish('ns1', '/tasks/create', 'TaskCreate', { containerId: 'c1', bundle: '/b', pid: 42 });
    pub.publish('ns1', '/tasks/start', 'TaskStart', { containerId: 'c1', pid: 42 });
    pub.publish('ns2', '/tasks/exit', 'TaskExit', { containerId: 'c1', id: 'c1', pid: 42, exitStatus: 3 });
    await pub.drain(5000);
    expect(seen.map((s) => [s.topic, s.namespace, s.metaNamespace])).toEqual([
      ['/tasks/create', 'ns1', 'ns1'],
      ['/tasks/start', 'ns1', 'ns1'],
      ['/tasks/exit', 'ns2', 'ns2'],
    ]);
    expect(seen[2].event).toMatchObject({ containerId: 'c1', pid: 42, exitStatus: 3 });
  } finally {
    await pub.close();
    await server.close();
  }
});

test('retries while the daemon is away, then drops what it cannot deliver', async () => {
  const path = join(dir, 'late.sock.ttrpc');
  const seen: Seen[] = [];
  const pub = new Publisher(path, silentLogger, { maxAttempts: 50, retryDelayMs: 10 });
  pub.publish('ns1', '/tasks/oom', 'TaskOOM', { containerId: 'c1' });
  await new Promise((r) => setTimeout(r, 50));
  const server = await eventsServer(path, seen);
  try {
    await pub.drain(5000);
    expect(seen.map((s) => s.topic)).toEqual(['/tasks/oom']);
    expect(pub.dropped).toBe(0);
  } finally {
    await pub.close();
    await server.close();
  }
  const lost = new Publisher(join(dir, 'nobody.sock'), silentLogger, { maxAttempts: 2, retryDelayMs: 1 });
  lost.publish('ns1', '/tasks/paused', 'TaskPaused', { containerId: 'c1' });
  await lost.drain(5000);
  expect(lost.dropped).toBe(1);
  await lost.close();
});

test('without a daemon address events go nowhere, quietly', async () => {
  const pub = new Publisher(undefined, silentLogger);
  pub.publish('ns1', '/tasks/start', 'TaskStart', { containerId: 'c1', pid: 1 });
  await pub.drain(100);
  expect(pub.dropped).toBe(0);
});
