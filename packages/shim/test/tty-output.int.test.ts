// A terminal's whole output reaches the client before its exit is published (root, runc):
// the shim copies the pty master to the stdout FIFO until the master reads EIO (the
// container's side closed), and only then sends /tasks/exit and closes the FIFO. The
// client here reads a chunk every 10 ms, slower than `seq` writes: the process exits while
// the pty is still full, which is when a copy that stops at the pty's hangup loses output.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FifoReader, makeRootfs, processSpec, requireBuilt, World } from './helpers';

jest.setTimeout(180_000);

const NS = { namespace: 'testns' };
const LINES = 1_000_000;
/** What a FIFO holds in the kernel (Linux's default pipe capacity): all a reader may not have read yet. */
const PIPE_CAPACITY = 65_536;

let base: string;
let rootfs: string;
let world: World;

beforeAll(() => {
  requireBuilt();
  base = mkdtempSync(join(tmpdir(), 'berth-shim-rootfs-'));
  rootfs = makeRootfs(base);
});
afterAll(() => rmSync(base, { recursive: true, force: true }));
beforeEach(async () => {
  world = await new World(rootfs).init();
});
afterEach(async () => {
  await world.dispose();
});

/** Bytes `seq 1 n` prints on a terminal (ONLCR: every line ends in \r\n). */
function seqBytes(n: number): number {
  let total = 0;
  for (let digits = 1, from = 1; from <= n; digits++, from *= 10) {
    total += (Math.min(n, from * 10 - 1) - from + 1) * (digits + 2);
  }
  return total;
}

/** How many bytes the reader held when the exit event of `execId` (or the init) came. */
function bytesAtExit(reader: FifoReader, containerId: string, execId: string): Promise<number> {
  return new Promise((resolve) => {
    world.events.onEvent((e) => {
      if (e.topic === '/tasks/exit' && e.event.containerId === containerId && e.event.id === execId) {
        resolve(reader.length());
      }
    });
  });
}

function expectSeq(text: string, n: number): void {
  const lines = text.split('\r\n');
  expect(lines.pop()).toBe('');
  expect(lines.length).toBe(n);
  expect(lines[0]).toBe('1');
  expect(lines[lines.length - 1]).toBe(String(n));
}

test('a TTY exec printing a million lines: every byte reaches the FIFO, before the exit event', async () => {
  const bundle = world.bundle('big', { args: ['sleep', '1000'] });
  const { task } = await world.start('big', bundle);
  await task.Create({ id: 'big', bundle }, NS);
  await task.Start({ id: 'big' }, NS);
  const out = world.reader('big-exec-out', { everyMs: 10 });
  await task.Exec(
    {
      id: 'big',
      execId: 'seq',
      terminal: true,
      stdout: out.path,
      spec: processSpec(['seq', String(LINES)], { terminal: true }),
    },
    NS,
  );
  const atExit = bytesAtExit(out, 'big', 'seq');
  await task.Start({ id: 'big', execId: 'seq' }, NS);
  expect(await task.Wait({ id: 'big', execId: 'seq' }, NS)).toMatchObject({ exitStatus: 0 });
  const held = await atExit;
  await out.ended;
  expect(out.length()).toBe(seqBytes(LINES));
  expectSeq(out.text(), LINES);
  // When the exit came, all output was read or waiting in the FIFO itself.
  expect(held).toBeGreaterThanOrEqual(seqBytes(LINES) - PIPE_CAPACITY);
  await task.Delete({ id: 'big', execId: 'seq' }, NS);
  await task.Kill({ id: 'big', signal: 9 }, NS);
  await task.Wait({ id: 'big' }, NS);
  await task.Delete({ id: 'big' }, NS);
});

test('a TTY task printing a million lines: every byte reaches the FIFO, before the exit event', async () => {
  const bundle = world.bundle('bigtask', { args: ['seq', String(LINES)], terminal: true });
  const out = world.reader('bigtask-out', { everyMs: 10 });
  const { task } = await world.start('bigtask', bundle);
  await task.Create({ id: 'bigtask', bundle, terminal: true, stdout: out.path }, NS);
  const atExit = bytesAtExit(out, 'bigtask', 'bigtask');
  await task.Start({ id: 'bigtask' }, NS);
  expect(await task.Wait({ id: 'bigtask' }, NS)).toMatchObject({ exitStatus: 0 });
  const held = await atExit;
  await out.ended;
  expect(out.length()).toBe(seqBytes(LINES));
  expectSeq(out.text(), LINES);
  expect(held).toBeGreaterThanOrEqual(seqBytes(LINES) - PIPE_CAPACITY);
  await task.Delete({ id: 'bigtask' }, NS);
});

test('a TTY exec whose background child keeps the terminal: its output still ends with its exit', async () => {
  const bundle = world.bundle('holder', { args: ['sleep', '1000'] });
  const { task } = await world.start('holder', bundle);
  await task.Create({ id: 'holder', bundle }, NS);
  await task.Start({ id: 'holder' }, NS);
  const out = world.reader('holder-exec-out');
  await task.Exec(
    {
      id: 'holder',
      execId: 'bg',
      terminal: true,
      stdout: out.path,
      spec: processSpec(['sh', '-c', 'trap "" HUP; sleep 1000 & echo started'], { terminal: true }),
    },
    NS,
  );
  await task.Start({ id: 'holder', execId: 'bg' }, NS);
  expect(await task.Wait({ id: 'holder', execId: 'bg' }, NS)).toMatchObject({ exitStatus: 0 });
  // The FIFO ends with the exec, before any Delete, while `sleep` still has the slave open
  // (containerd's copy also stops at the first empty read after the exit).
  const { processes } = await task.Pids({ id: 'holder' }, NS);
  expect(processes).toHaveLength(2);
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    out.ended.then(() => true),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), 10_000);
    }),
  ]);
  clearTimeout(timer);
  expect(ended).toBe(true);
  expect(out.text()).toBe('started\r\n');
  await task.Delete({ id: 'holder', execId: 'bg' }, NS);
  await task.Kill({ id: 'holder', signal: 9, all: true }, NS);
  await task.Wait({ id: 'holder' }, NS);
  await task.Delete({ id: 'holder' }, NS);
});
