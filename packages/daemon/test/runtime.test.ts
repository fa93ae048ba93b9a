/**
 * The parts of the v2 runtime that need no root: runtime names to shim binaries, the
 * shim log relay, user-namespace gids of a spec, and the ttrpc listener shims forward
 * their events to.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  decodeMessage,
  type Envelope,
  encodeAny,
  encodeMessage,
  envelopeToWire,
  FailedPreconditionError,
  InvalidArgumentError,
} from '@berth/api';
import { TtrpcClient } from '@berth/ttrpc';
import { createLogger, Exchange, type ExchangeEnvelope } from '../src';
import { resolveShimBinary, shimBinaryName } from '../src/runtime/binary';
import { remappedGid } from '../src/runtime/bundle';
import { ShimEventsServer, TTRPC_EVENTS_SERVICE, ttrpcAddressOf } from '../src/runtime/events-server';
import { relayShimLogLine } from '../src/runtime/shim-log';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-runtime-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function executable(at: string): string {
  fs.mkdirSync(path.dirname(at), { recursive: true });
  fs.writeFileSync(at, '#!/bin/sh\n', { mode: 0o755 });
  return at;
}

describe('runtime names and shim binaries', () => {
  it('maps a runtime name to its shim binary as containerd does', () => {
    expect(shimBinaryName('io.containerd.runc.v2')).toBe('containerd-shim-runc-v2');
    expect(shimBinaryName('io.containerd.berth.v1')).toBe('containerd-shim-berth-v1');
    expect(shimBinaryName('custom.v3')).toBe('containerd-shim-custom-v3');
    expect(shimBinaryName('runc')).toBeUndefined();
    expect(shimBinaryName('io.containerd.runc.')).toBeUndefined();
  });

  it('looks on PATH first, then in the extra directories, skipping what is not executable', () => {
    const onPath = path.join(dir, 'path');
    const extra = path.join(dir, 'extra');
    executable(path.join(extra, 'containerd-shim-berth-v1'));
    fs.mkdirSync(onPath);
    fs.writeFileSync(path.join(onPath, 'containerd-shim-berth-v1'), 'not executable', { mode: 0o644 });
    const opts = { path: `${path.join(dir, 'missing')}:${onPath}`, extraDirs: [extra] };
    expect(resolveShimBinary('io.containerd.berth.v1', opts)).toBe(
      path.join(extra, 'containerd-shim-berth-v1'),
    );
    executable(path.join(onPath, 'containerd-shim-berth-v2'));
    executable(path.join(extra, 'containerd-shim-berth-v2'));
    expect(resolveShimBinary('io.containerd.berth.v2', opts)).toBe(
      path.join(onPath, 'containerd-shim-berth-v2'),
    );
  });

  it("finds berth's shim through the @berth/shim dependency, with nothing on PATH", () => {
    const shimPackage = path.dirname(require.resolve('@berth/shim/package.json'));
    expect(resolveShimBinary('io.containerd.berth.v1', { path: '' })).toBe(
      path.join(shimPackage, 'bin', 'containerd-shim-berth-v1'),
    );
    expect(() => resolveShimBinary('io.containerd.other.v1', { path: '' })).toThrow(FailedPreconditionError);
  });

  it('takes an absolute path as the binary itself', () => {
    const bin = executable(path.join(dir, 'my-shim'));
    expect(resolveShimBinary(bin, { path: '', extraDirs: [] })).toBe(bin);
    expect(() => resolveShimBinary(path.join(dir, 'nope'), { path: '', extraDirs: [] })).toThrow(
      FailedPreconditionError,
    );
  });

  it('refuses empty, malformed and uninstalled runtimes with the name in the message', () => {
    const none = { path: '', extraDirs: [dir] };
    expect(() => resolveShimBinary('', none)).toThrow(new InvalidArgumentError('no runtime name'));
    expect(() => resolveShimBinary('runc', none)).toThrow(/invalid runtime name runc/);
    expect(() => resolveShimBinary('../x.v1', none)).toThrow(InvalidArgumentError);
    expect(() => resolveShimBinary('io.containerd.nope.v1', none)).toThrow(
      new FailedPreconditionError(
        'runtime "io.containerd.nope.v1" binary not installed "containerd-shim-nope-v1": file does not exist',
      ),
    );
  });
});

describe('shim log relay', () => {
  it('re-logs a logrus line at its level, with the shim fields and without its own time', () => {
    const lines: string[] = [];
    const log = createLogger('debug', (l) => lines.push(l)).with({ id: 't1' });
    relayShimLogLine(
      log,
      'time="2024-01-01T00:00:00Z" level=warning msg="cleanup warnings" namespace=default',
    );
    relayShimLogLine(log, 'time="2024-01-01T00:00:00Z" level=debug msg="serving api on socket"');
    relayShimLogLine(log, 'plain text from a shim');
    relayShimLogLine(log, 'level=error msg="quoted \\"inner\\" text" error="exit status 1"');
    relayShimLogLine(log, '   ');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/ level=warning msg="cleanup warnings" id=t1 namespace=default\n$/);
    expect(lines[1]).toMatch(/level=debug /);
    expect(lines[2]).toMatch(/level=info msg="plain text from a shim" id=t1/);
    expect(lines[3]).toMatch(/level=error msg="quoted \\"inner\\" text" id=t1 error="exit status 1"/);
  });

  it('drops what the logger would not print', () => {
    const lines: string[] = [];
    const log = createLogger('warn', (l) => lines.push(l));
    relayShimLogLine(log, 'level=info msg="starting signal loop"');
    expect(lines).toEqual([]);
  });
});

describe('remappedGid', () => {
  const spec = (linux: object) => Buffer.from(JSON.stringify({ ociVersion: '1.0.2', linux }));
  it('finds the host gid of container root, 0 without a user namespace', () => {
    expect(remappedGid(spec({}))).toBe(0);
    expect(remappedGid(spec({ gidMappings: [{ containerID: 1, hostID: 5000, size: 10 }] }))).toBe(0);
    expect(remappedGid(spec({ gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }] }))).toBe(
      100000,
    );
  });
  it('refuses a spec that is not JSON', () => {
    expect(() => remappedGid(Buffer.from('{nope'))).toThrow(InvalidArgumentError);
  });
});

describe('the ttrpc listener for shim events', () => {
  it('derives its address from the gRPC address', () => {
    expect(ttrpcAddressOf('/run/berth/berth.sock')).toBe('/run/berth/berth.sock.ttrpc');
    expect(ttrpcAddressOf('unix:///run/berth/berth.sock')).toBe('/run/berth/berth.sock.ttrpc');
  });

  it('forwards envelopes into the exchange and to observers, refuses incomplete ones, removes its socket', async () => {
    const forwarded: Envelope[] = [];
    const observed: string[] = [];
    let fail: Error | undefined;
    const server = new ShimEventsServer({
      forward: async (e) => {
        if (fail) throw fail;
        forwarded.push(e);
      },
    });
    server.observe((e) => observed.push(e.topic));
    const address = ttrpcAddressOf(path.join(dir, 'berth.sock'));
    await server.listen(address);
    expect(fs.statSync(address).mode & 0o777).toBe(0o660);
    const client = await TtrpcClient.connect(address);
    try {
      const events = client.service(TTRPC_EVENTS_SERVICE);
      const event = encodeAny('containerd.events.TaskExit', { containerId: 'c1', id: 'c1', exitStatus: 3 });
      await events.forward(
        {
          envelope: {
            timestamp: { seconds: 1700000000, nanos: 5_000_000 },
            namespace: 'ns1',
            topic: '/tasks/exit',
            event,
          },
        },
        { namespace: 'ns1' },
      );
      expect(forwarded).toEqual([
        { timestamp: new Date(1700000000005), namespace: 'ns1', topic: '/tasks/exit', event },
      ]);
      expect(observed).toEqual(['/tasks/exit']);

      await expect(events.forward({}, { namespace: 'ns1' })).rejects.toThrow(InvalidArgumentError);
      await expect(
        events.forward({ envelope: { namespace: 'ns1', topic: '/tasks/exit', event } }, { namespace: 'ns1' }),
      ).rejects.toThrow('timestamp must be set');
      // What the exchange refuses reaches the shim as the same error, and no observer sees it.
      fail = new InvalidArgumentError('envelope topic "bad": must start with \'/\'');
      await expect(
        events.forward(
          { envelope: { timestamp: { seconds: 1, nanos: 0 }, namespace: 'ns1', topic: 'bad', event } },
          { namespace: 'ns1' },
        ),
      ).rejects.toThrow(new InvalidArgumentError('envelope topic "bad": must start with \'/\''));
      expect(observed).toEqual(['/tasks/exit']);
    } finally {
      await client.close();
      await server.close();
    }
    expect(fs.existsSync(address)).toBe(false);
  });

  it('forwards an envelope whose event is empty or missing, as containerd forwards an empty Any', async () => {
    const exchange = new Exchange();
    const all = exchange.subscribe();
    const byEvent = exchange.subscribe(['event.id==c1']);
    const server = new ShimEventsServer(exchange);
    const exit = encodeAny('containerd.events.TaskExit', { containerId: 'c1', id: 'c1', exitStatus: 0 });
    const address = ttrpcAddressOf(path.join(dir, 'berth.sock'));
    await server.listen(address);
    const client = await TtrpcClient.connect(address);
    try {
      const events = client.service(TTRPC_EVENTS_SERVICE);
      const timestamp = { seconds: 1700000000, nanos: 0 };
      await events.forward(
        {
          envelope: {
            timestamp,
            namespace: 'ns1',
            topic: '/tasks/exit',
            event: { typeUrl: '', value: Buffer.alloc(0) },
          },
        },
        { namespace: 'ns1' },
      );
      await events.forward(
        { envelope: { timestamp, namespace: 'ns1', topic: '/tasks/oom' } },
        { namespace: 'ns1' },
      );
      await events.forward(
        { envelope: { timestamp, namespace: 'ns1', topic: '/tasks/exit', event: exit } },
        { namespace: 'ns1' },
      );
      // The exchange still checks what containerd's does, event or not.
      await expect(
        events.forward(
          { envelope: { timestamp, namespace: 'ns 1', topic: '/tasks/exit' } },
          { namespace: 'ns1' },
        ),
      ).rejects.toThrow(InvalidArgumentError);
      await expect(
        events.forward({ envelope: { namespace: 'ns1', topic: '/tasks/exit' } }, { namespace: 'ns1' }),
      ).rejects.toThrow('timestamp must be set');
    } finally {
      await client.close();
      await server.close();
    }
    const seen: ExchangeEnvelope[] = [];
    for await (const env of all) {
      seen.push(env);
      if (seen.length === 3) break;
    }
    expect(seen.map((e) => [e.topic, e.event.typeUrl, e.event.value.length])).toEqual([
      ['/tasks/exit', '', 0],
      ['/tasks/oom', '', 0],
      ['/tasks/exit', 'containerd.events.TaskExit', exit.value.length],
    ]);
    // A Subscribe client gets the event field present and empty, as containerd sends an empty
    // Any; a filter on the event's fields cannot match it.
    const typeName = 'containerd.services.events.v1.Envelope';
    for (const env of seen.slice(0, 2)) {
      const wire = decodeMessage<{ topic: string; event: { typeUrl: string; value: Uint8Array } | null }>(
        typeName,
        encodeMessage(typeName, envelopeToWire(env)),
      );
      expect(wire.topic).toBe(env.topic);
      expect(wire.event).not.toBeNull();
      expect([wire.event?.typeUrl, wire.event?.value.length]).toEqual(['', 0]);
    }
    const filtered: ExchangeEnvelope[] = [];
    for await (const env of byEvent) {
      filtered.push(env);
      break;
    }
    expect(filtered.map((e) => e.event.typeUrl)).toEqual(['containerd.events.TaskExit']);
  });
});
