import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnavailableError } from '@berth/api';
import { TtrpcServer } from '@berth/ttrpc';
import { reserve } from '../src/reserve';
import { bytesField, lengthField, numberField, readFields, stringField, varint } from '../src/wire';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-reserve-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('the hand-made wire helpers read back what they write', () => {
  expect(varint(300)).toEqual(Buffer.from([0xac, 0x02]));
  const msg = Buffer.concat([
    lengthField(1, 'abc'),
    Buffer.from([0x10]),
    varint(2 ** 40),
    lengthField(3, Buffer.from([1, 2])),
  ]);
  const fields = readFields(msg);
  expect(stringField(fields, 1)).toBe('abc');
  expect(numberField(fields, 2)).toBe(2 ** 40);
  expect(bytesField(fields, 3)).toEqual(Buffer.from([1, 2]));
  expect(() => readFields(Buffer.from([0x0a, 0x05, 0x61]))).toThrow('truncated');
});

test('reserve speaks ttrpc to a real server: ok when Connect answers, refused on an error, unreachable without a server', async () => {
  const seen: { id: string; namespace?: string }[] = [];
  let refuse = false;
  const server = new TtrpcServer();
  server.register('containerd.task.v2.Task', {
    Connect: (req: { id: string }, ctx) => {
      seen.push({ id: req.id, namespace: ctx.namespace });
      if (refuse) throw new UnavailableError('shim is shutting down');
      return { shimPid: 1, taskPid: 0, version: 'x' };
    },
  });
  const path = join(dir, 'shim.sock');
  await server.listen(path);
  try {
    expect(await reserve(path, 'ns1', 'web')).toBe('ok');
    refuse = true;
    expect(await reserve(path, 'ns1', 'db')).toBe('refused');
    expect(seen).toEqual([
      { id: 'web', namespace: 'ns1' },
      { id: 'db', namespace: 'ns1' },
    ]);
  } finally {
    await server.close();
  }
  expect(await reserve(path, 'ns1', 'web')).toBe('unreachable');
  expect(await reserve(join(dir, 'none.sock'), 'ns1', 'web')).toBe('unreachable');
});

test('a shim that accepts but does not answer in time counts as refused, not as gone', async () => {
  const { createServer } = await import('node:net');
  const silent = createServer((s) => s.resume());
  const path = join(dir, 'silent.sock');
  await new Promise<void>((r) => silent.listen(path, r));
  try {
    expect(await reserve(path, 'ns1', 'web', 100)).toBe('refused');
  } finally {
    await new Promise((r) => silent.close(r));
  }
});
